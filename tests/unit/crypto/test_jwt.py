"""JWT signing, encryption and verification: pinned algorithms, claim checks, safe messages."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jws
from joserfc.jwk import KeySet

from kubemint.crypto import keys
from kubemint.crypto.jwt import (
    MAX_TOKEN_BYTES,
    Decrypter,
    Encrypter,
    InvalidJWT,
    Signer,
    decode_unverified,
    verify_hmac_jwt,
    verify_jwt,
)

NOW = 1_700_000_000.0
ISS = "https://auth.example"
AUD = "https://api.example"
SECRET = "kmint_" + "s" * 43

MATERIAL = {alg: keys.generate(alg) for alg in keys.SIGNING_ALGORITHMS}
SIGNERS = {alg: Signer(material) for alg, material in MATERIAL.items()}
PUBLIC = {alg: material.public_jwk() for alg, material in MATERIAL.items()}
ENC = keys.generate("RSA-OAEP-256")
OTHER_ENC = keys.generate("RSA-OAEP-256")
ALL_PUBLIC = list(PUBLIC.values())


def _claims(**changes: Any) -> dict[str, Any]:
    claims = {"iss": ISS, "sub": "svc", "aud": AUD, "iat": NOW, "exp": NOW + 300, "jti": "j1"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _json_claims() -> bytes:
    return json.dumps(_claims()).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json64(value: Any) -> str:
    return _b64(json.dumps(value).encode())


def _raw(header: dict[str, Any], payload: bytes, alg: str = "ES256") -> str:
    """A token signed with the ES256 test key but with any header and payload bytes."""
    key = keys.jose_key(MATERIAL[alg].private_pem)
    registry = jws.JWSRegistry(algorithms=[alg])
    registry.max_header_length = 4096
    return jws.serialize_compact(header, payload, key, registry=registry)


def _hs(claims: dict[str, Any], secret: bytes, alg: str = "HS256", **header: Any) -> str:
    """An HMAC token built by hand (joserfc would refuse a PEM public key as the secret)."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = _json64({"alg": alg, "typ": "JWT", **header}) + "." + _json64(claims)
    signature = hmac.new(secret, signing_input.encode(), digest).digest()
    return signing_input + "." + _b64(signature)


def _verify(token: str, **options: Any) -> dict[str, Any]:
    options = {
        "keys": ALL_PUBLIC,
        "algorithms": keys.SIGNING_ALGORITHMS,
        "issuer": ISS,
        "audience": AUD,
        "now": NOW,
        **options,
    }
    return verify_jwt(token, options.pop("keys"), **options)


def _tamper(token: str, index: int) -> str:
    parts = token.split(".")
    if index == 1:
        parts[1] = _json64(_claims(sub="admin"))
    else:
        parts[index] = parts[index][:-4] + ("AAAA" if parts[index][-4:] != "AAAA" else "BBBB")
    return ".".join(parts)


RSA_PUBLIC_PEM = keys.jose_key(MATERIAL["RS256"].private_pem).public_key.public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
ES = SIGNERS["ES256"]


@pytest.mark.parametrize(
    "alg", keys.SIGNING_ALGORITHMS, ids=lambda alg: f"{alg} signs and verifies"
)
def test_every_signing_algorithm_round_trips(alg: str) -> None:
    token = SIGNERS[alg].sign(_claims())
    assert _verify(token) == _claims()
    header, _ = decode_unverified(token)
    assert header == {"alg": alg, "kid": MATERIAL[alg].kid, "typ": "at+jwt"}
    assert (SIGNERS[alg].kid, SIGNERS[alg].algorithm) == (MATERIAL[alg].kid, alg)


@pytest.mark.parametrize(
    ("make", "options"),
    [
        (lambda: ES.sign(_claims(exp=NOW - 10)), {}),
        (lambda: ES.sign(_claims(iat=NOW + 20, nbf=NOW + 20)), {}),
        (lambda: ES.sign(_claims(aud=["other", AUD])), {}),
        (lambda: ES.sign(_claims()), {"audience": ["other", AUD]}),
        (lambda: ES.sign(_claims(iss=None, aud=None)), {"issuer": None, "audience": None}),
        (lambda: ES.sign(_claims()), {"keys": KeySet.import_key_set({"keys": ALL_PUBLIC})}),
        (lambda: ES.sign(_claims()), {"keys": {"keys": ALL_PUBLIC}}),
        (
            lambda: _raw({"alg": "ES256"}, json.dumps(_claims()).encode()),
            {"keys": [{k: v for k, v in PUBLIC["ES256"].items() if k != "kid"}]},
        ),
        (lambda: ES.sign(_claims(), typ="JWT"), {"typ": "application/jwt"}),
        (
            lambda: _raw({"alg": "ES256", "kid": ES.kid, "x5c": ["A" * 2000]}, _json_claims()),
            {},
        ),
        (lambda: ES.sign(_claims(exp=NOW + 600)), {"max_lifetime": 600}),
    ],
    ids=[
        "a token expired by less than the leeway is accepted",
        "iat and nbf slightly in the future are within the leeway",
        "an aud list holding the accepted audience is accepted",
        "any one of several accepted audiences will do",
        "iss and aud are only checked when asked for",
        "a prebuilt KeySet works like a list of JWKs",
        "a JWKS object works like a list of JWKs",
        "a token without kid is tried against the only fitting key",
        "typ is compared as a media type when required",
        "a header carrying a certificate chain is not too large",
        "a lifetime equal to the maximum is accepted",
    ],
)
def test_tokens_that_are_accepted(make: Callable[[], str], options: dict[str, Any]) -> None:
    assert _verify(make(), **options)["sub"] == "svc"


def _constant(text: str) -> Callable[[], str]:
    return lambda: text


def _rejection_cases() -> list[Any]:
    es_claims = json.dumps(_claims()).encode()
    hs_pem = _hs(_claims(), RSA_PUBLIC_PEM, kid=MATERIAL["RS256"].kid)
    cases: list[tuple[str, Callable[[], str], dict[str, Any], str]] = [
        (
            "an unsigned alg none token is rejected",
            lambda: _json64({"alg": "none"}) + "." + _json64(_claims()) + ".",
            {},
            "algorithm not allowed",
        ),
        (
            "an HS256 token keyed with the RSA public key's PEM is rejected",
            lambda: hs_pem,
            {"keys": [PUBLIC["RS256"]], "algorithms": ["RS256"]},
            "algorithm not allowed",
        ),
        (
            "an algorithm outside the allow-list is rejected",
            lambda: ES.sign(_claims()),
            {"algorithms": ["RS256", "PS256"]},
            "algorithm not allowed",
        ),
        (
            "a key whose alg member names another algorithm is not used",
            lambda: SIGNERS["RS256"].sign(_claims()),
            {"keys": [{**PUBLIC["RS256"], "alg": "PS256"}]},
            "key does not match algorithm",
        ),
        (
            "an ES256 token is not checked with a P-384 key under its kid",
            lambda: ES.sign(_claims()),
            {"keys": [{**PUBLIC["ES384"], "kid": ES.kid}]},
            "key does not match algorithm",
        ),
        (
            "an encryption key is not used to verify signatures",
            lambda: ES.sign(_claims()),
            {"keys": [{**PUBLIC["ES256"], "use": "enc"}]},
            "key does not match algorithm",
        ),
        (
            "a symmetric key in the set is never used to verify",
            lambda: _raw({"alg": "ES256"}, es_claims),
            {"keys": [{"kty": "oct", "k": _b64(SECRET.encode())}]},
            "key does not match algorithm",
        ),
        (
            "an expired token is rejected",
            lambda: ES.sign(_claims(exp=NOW - 31)),
            {},
            "token expired",
        ),
        (
            "a token whose nbf is in the future is rejected",
            lambda: ES.sign(_claims(nbf=NOW + 60)),
            {},
            "token not yet valid",
        ),
        (
            "a token issued in the future is rejected",
            lambda: ES.sign(_claims(iat=NOW + 60)),
            {},
            "token issued in the future",
        ),
        (
            "a token from another issuer is rejected",
            lambda: ES.sign(_claims(iss="https://evil.example")),
            {},
            "issuer not accepted",
        ),
        (
            "a token without iss is rejected when an issuer is expected",
            lambda: ES.sign(_claims(iss=None)),
            {},
            "missing claim: iss",
        ),
        (
            "a token for another audience is rejected",
            lambda: ES.sign(_claims(aud="https://other.example")),
            {},
            "audience not accepted",
        ),
        (
            "an aud list without an accepted audience is rejected",
            lambda: ES.sign(_claims(aud=["a", "b"])),
            {},
            "audience not accepted",
        ),
        (
            "a token without exp is rejected",
            lambda: ES.sign(_claims(exp=None)),
            {},
            "missing claim: exp",
        ),
        (
            "a non-numeric exp is rejected",
            lambda: ES.sign(_claims(exp="tomorrow")),
            {},
            "invalid claim: exp",
        ),
        (
            "a NaN exp is rejected",
            lambda: _raw(
                {"alg": "ES256", "kid": ES.kid}, es_claims.replace(b'"exp": ', b'"exp": NaN, "x": ')
            ),
            {},
            "invalid claim: exp",
        ),
        (
            "a lifetime above the maximum is rejected",
            lambda: ES.sign(_claims(exp=NOW + 601)),
            {"max_lifetime": 600},
            "token lifetime too long",
        ),
        (
            "a lifetime without iat is measured from now",
            lambda: ES.sign(_claims(iat=None, exp=NOW + 601)),
            {"max_lifetime": 600},
            "token lifetime too long",
        ),
        (
            "an unknown kid is rejected",
            lambda: _raw({"alg": "ES256", "kid": "nope"}, es_claims),
            {},
            "unknown key id",
        ),
        (
            "a token without kid is rejected when several keys fit",
            lambda: _raw({"alg": "ES256"}, es_claims),
            {"keys": [PUBLIC["ES256"], keys.generate("ES256").public_jwk()]},
            "key id required",
        ),
        (
            "a token signed by another key under a known kid is rejected",
            lambda: jws.serialize_compact(
                {"alg": "ES256", "kid": ES.kid},
                es_claims,
                keys.jose_key(keys.generate("ES256").private_pem),
                algorithms=["ES256"],
            ),
            {},
            "signature does not verify",
        ),
        (
            "a tampered payload is rejected",
            lambda: _tamper(ES.sign(_claims()), 1),
            {},
            "signature does not verify",
        ),
        (
            "a tampered signature is rejected",
            lambda: _tamper(SIGNERS["RS256"].sign(_claims()), 2),
            {},
            "signature does not verify",
        ),
        (
            "a token of the wrong type is rejected when typ is required",
            lambda: ES.sign(_claims(), typ="JWT"),
            {"typ": "at+jwt"},
            "unexpected token type",
        ),
        (
            "a critical header extension is rejected",
            lambda: (
                _json64({"alg": "ES256", "kid": ES.kid, "crit": ["x"], "x": 1})
                + "."
                + _json64(_claims())
                + ".AA"
            ),
            {},
            "unsupported critical header",
        ),
        (
            "an oversize token is rejected before parsing",
            lambda: ES.sign(_claims(pad="x" * MAX_TOKEN_BYTES)),
            {},
            "token too large",
        ),
        (
            "signed claims that are not an object are rejected",
            lambda: _raw({"alg": "ES256", "kid": ES.kid}, b"[1, 2]"),
            {},
            "malformed token",
        ),
        (
            "signed claims that are not JSON are rejected",
            lambda: _raw({"alg": "ES256", "kid": ES.kid}, b"hello"),
            {},
            "malformed token",
        ),
        (
            "a token for an unusable key set is rejected",
            lambda: ES.sign(_claims()),
            {"keys": [{"kty": "EC", "crv": "P-256", "x": "bad"}]},
            "no usable verification key",
        ),
    ]
    garbage = {
        "an empty string is malformed": "",
        "plain text is malformed": "not a token",
        "two segments are malformed": "a.b",
        "four segments are malformed": "a.b.c.d",
        "empty segments are malformed": "..",
        "a header that is not base64url is malformed": "@@@.e30.AA",
        "padded base64 is malformed": "e30.e30.AA=",
        "a header that is a JSON list is malformed": _json64([1]) + ".e30.AA",
        "a header that is not JSON is malformed": _b64(b"{not json") + ".e30.AA",
        "a non-string alg is malformed": _json64({"alg": 256}) + ".e30.AA",
        "a non-string kid is malformed": _json64({"alg": "ES256", "kid": 7}) + ".e30.AA",
        "non-ASCII text is malformed": "eyJhbGciOiJFUzI1NiJ9.é.AA",
        "a signature of impossible length is malformed": "eyJhbGciOiJFUzI1NiJ9.e30.A",
        "deeply nested JSON is malformed": _b64(b"[" * 5000) + ".e30.AA",
    }
    for name, text in garbage.items():
        cases.append((name, _constant(text), {}, "malformed token"))
    return [pytest.param(make, options, message, id=name) for name, make, options, message in cases]


@pytest.mark.parametrize(("make", "options", "message"), _rejection_cases())
def test_tokens_that_are_rejected(
    make: Callable[[], str], options: dict[str, Any], message: str
) -> None:
    token = make()
    with pytest.raises(InvalidJWT) as caught:
        _verify(token, **options)
    assert str(caught.value) == message
    if token:
        assert token not in str(caught.value)
    assert "BEGIN" not in str(caught.value)


def test_hmac_algorithms_are_refused_next_to_public_keys() -> None:
    with pytest.raises(ValueError, match="unsupported algorithms") as caught:
        _verify(ES.sign(_claims()), algorithms=["ES256", "HS256"])
    assert not isinstance(caught.value, InvalidJWT)


@pytest.mark.parametrize(
    ("make", "secrets", "message"),
    [
        (lambda: _hs(_claims(), SECRET.encode()), [SECRET], None),
        (lambda: _hs(_claims(), SECRET.encode(), "HS512"), [SECRET], None),
        (lambda: _hs(_claims(), SECRET.encode()), ["kmint_" + "o" * 43, SECRET], None),
        (lambda: _hs(_claims(), b"wrong" * 10), [SECRET], "signature does not verify"),
        (lambda: _hs(_claims(), b"short"), ["short"], "signature does not verify"),
        (lambda: _hs(_claims(), RSA_PUBLIC_PEM), [RSA_PUBLIC_PEM], "signature does not verify"),
        (lambda: ES.sign(_claims()), [SECRET], "algorithm not allowed"),
        (lambda: _hs(_claims(exp=NOW - 60), SECRET.encode()), [SECRET], "token expired"),
    ],
    ids=[
        "an HS256 token verifies with the client secret",
        "an HS512 token verifies with the client secret",
        "any of several overlapping secrets will do",
        "a token keyed with another secret is rejected",
        "secrets shorter than 32 bytes are never used",
        "a public key PEM is never used as an HMAC secret",
        "an asymmetric token is not an HMAC token",
        "HMAC tokens get the same claim checks",
    ],
)
def test_hmac_tokens(make: Callable[[], str], secrets: list[Any], message: str | None) -> None:
    token = make()
    options: dict[str, Any] = {"issuer": ISS, "audience": AUD, "now": NOW}
    if message is None:
        assert verify_hmac_jwt(token, secrets, **options) == _claims()
        return
    with pytest.raises(InvalidJWT) as caught:
        verify_hmac_jwt(token, secrets, **options)
    assert str(caught.value) == message


def test_a_jwe_round_trips_and_nests_the_signed_jwt() -> None:
    signed = ES.sign(_claims())
    token = Encrypter(ENC).encrypt(signed)
    segments = token.split(".")
    assert len(segments) == 5
    header = json.loads(base64.urlsafe_b64decode(segments[0] + "=="))
    assert header == {"alg": "RSA-OAEP-256", "enc": "A256CBC-HS512", "cty": "JWT", "kid": ENC.kid}
    inner = Decrypter(ENC).decrypt(token)
    assert inner == signed
    assert _verify(inner) == _claims()


def test_a_jwe_is_not_readable_without_the_private_key() -> None:
    signed = ES.sign(_claims(sub="secret-subject"))
    token = Encrypter(ENC).encrypt(signed)
    assert signed.split(".")[1] not in token
    assert not any(b"secret-subject" in _unpad(part) for part in token.split("."))
    with pytest.raises(InvalidJWT, match="malformed token"):
        _verify(token)
    with pytest.raises(InvalidJWT, match="unknown key id"):
        Decrypter(OTHER_ENC).decrypt(token)
    header, *rest = token.split(".")
    relabelled = ".".join([_json64({**json.loads(_unpad(header)), "kid": OTHER_ENC.kid}), *rest])
    with pytest.raises(InvalidJWT, match="token does not decrypt"):
        Decrypter(OTHER_ENC).decrypt(relabelled)
    tampered = ".".join([header, *rest[:2], _tamper_segment(rest[2]), rest[3]])
    with pytest.raises(InvalidJWT, match="token does not decrypt"):
        Decrypter(ENC).decrypt(tampered)


def _unpad(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _tamper_segment(segment: str) -> str:
    return ("B" if segment[0] == "A" else "A") + segment[1:]


@pytest.mark.parametrize(
    ("build", "material"),
    [
        (Signer, ENC),
        (Encrypter, MATERIAL["RS256"]),
        (Decrypter, MATERIAL["ES256"]),
    ],
    ids=[
        "an encryption key does not sign",
        "a signing key does not encrypt",
        "a signing key does not decrypt",
    ],
)
def test_keys_are_used_only_for_their_purpose(build: Any, material: keys.KeyMaterial) -> None:
    with pytest.raises(ValueError, match="is not"):
        build(material)


def test_decode_unverified_reads_header_and_claims_without_checks() -> None:
    header, claims = decode_unverified(ES.sign(_claims(exp=NOW - 9999)))
    assert header["kid"] == ES.kid
    assert claims["exp"] == NOW - 9999
