"""RFC 7523 client assertions: who signed, for whom, how long, and only once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from kubemint.crypto import keys
from kubemint.crypto.jwt import InvalidJWT, Signer
from kubemint.crypto.secrets import generate_secret
from kubemint.oauth.assertions import (
    ReplayCache,
    peek_unverified,
    verify_client_assertion,
)
from kubemint.oauth.errors import InvalidClient

NOW = 1_700_000_000.0
CLIENT = "billing"
ISSUER = "https://auth.example"
TOKEN_ENDPOINT = "https://auth.example/oauth2/token"
CLIENT_KEY = keys.generate("ES256")
CLIENT_JWKS = [CLIENT_KEY.public_jwk()]
SIGNER = Signer(CLIENT_KEY)
SECRET = generate_secret()


def _claims(**changes: Any) -> dict[str, Any]:
    claims = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": TOKEN_ENDPOINT,
        "iat": NOW,
        "exp": NOW + 60,
        "jti": "a1b2c3",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _private_key_jwt(**changes: Any) -> str:
    return SIGNER.sign(_claims(**changes), typ="JWT")


def _client_secret_jwt(secret: str = SECRET, **changes: Any) -> str:
    signing_input = (
        _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + _b64(json.dumps(_claims(**changes)).encode())
    )
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def _verify(assertion: str, replay: ReplayCache | None = None, **options: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "client_id": CLIENT,
        "tenant": "tasks",
        "token_endpoint": TOKEN_ENDPOINT,
        "issuer": ISSUER,
        "replay": ReplayCache() if replay is None else replay,
        "now": NOW,
    }
    if "hmac_secrets" not in options:
        defaults["keys"] = CLIENT_JWKS
    return verify_client_assertion(assertion, **{**defaults, **options})


@pytest.mark.parametrize(
    ("assertion", "options"),
    [
        (_private_key_jwt(), {}),
        (_client_secret_jwt(), {"hmac_secrets": [SECRET]}),
        (_private_key_jwt(aud=ISSUER), {}),
        (_private_key_jwt(aud=["https://elsewhere", TOKEN_ENDPOINT]), {}),
        (_private_key_jwt(iat=None), {}),
        (_private_key_jwt(exp=NOW + 3600), {}),
    ],
    ids=[
        "a private_key_jwt assertion signed by the client's key is accepted",
        "a client_secret_jwt assertion keyed with the client secret is accepted",
        "aud may be the issuer identifier",
        "aud may be a list that holds the token endpoint",
        "iat is optional",
        "a lifetime of exactly the maximum is accepted",
    ],
)
def test_valid_assertions_are_accepted(assertion: str, options: dict[str, Any]) -> None:
    claims = _verify(assertion, **options)
    assert (claims["iss"], claims["sub"]) == (CLIENT, CLIENT)


@pytest.mark.parametrize(
    ("assertion", "options", "reason"),
    [
        (_private_key_jwt(aud="https://other.example/token"), {}, "audience not accepted"),
        (_private_key_jwt(aud=None), {}, "missing claim: aud"),
        (_private_key_jwt(sub="someone-else"), {}, "subject does not match client"),
        (_private_key_jwt(iss="someone-else"), {}, "issuer not accepted"),
        (_private_key_jwt(), {"client_id": "someone-else"}, "issuer not accepted"),
        (_private_key_jwt(exp=None), {}, "missing claim: exp"),
        (_private_key_jwt(jti=None), {}, "missing claim: jti"),
        (_private_key_jwt(jti=""), {}, "invalid claim"),
        (_private_key_jwt(jti="j" * 257), {}, "jti too long"),
        (_private_key_jwt(exp=NOW + 3601), {}, "token lifetime too long"),
        (_private_key_jwt(iat=None, exp=NOW + 7200), {}, "token lifetime too long"),
        (_private_key_jwt(exp=NOW - 60), {}, "token expired"),
        (_private_key_jwt(), {"keys": [keys.generate("ES256").public_jwk()]}, "unknown key id"),
        (
            _client_secret_jwt(generate_secret()),
            {"hmac_secrets": [SECRET]},
            "signature does not verify",
        ),
        (_client_secret_jwt(), {}, "algorithm not allowed"),
        (_private_key_jwt(), {"hmac_secrets": [SECRET]}, "algorithm not allowed"),
        ("garbage", {}, "malformed token"),
    ],
    ids=[
        "an assertion for another audience is rejected",
        "an assertion without aud is rejected",
        "iss and sub must be the same client",
        "an assertion issued by another client is rejected",
        "an assertion is only good for the client it names",
        "an assertion without exp is rejected",
        "an assertion without jti is rejected",
        "an empty jti is rejected",
        "an overlong jti is rejected",
        "an assertion living longer than the maximum is rejected",
        "without iat the lifetime counts from now",
        "an expired assertion is rejected",
        "an assertion signed with a key the client did not register is rejected",
        "a client_secret_jwt keyed with another secret is rejected",
        "an HMAC assertion is not checked against public keys",
        "an asymmetric assertion is not checked against secrets",
        "a string that is not a JWT is rejected",
    ],
)
def test_invalid_assertions_are_rejected_without_echoing_them(
    assertion: str, options: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidClient) as caught:
        _verify(assertion, **options)
    description = caught.value.description
    assert description == f"client assertion rejected: {reason}"
    assert caught.value.status_code == 401
    for part in [assertion, *assertion.split(".")]:
        assert not part or part not in description
    assert SECRET not in description


def test_a_replayed_jti_is_rejected() -> None:
    replay = ReplayCache()
    assertion = _private_key_jwt()
    _verify(assertion, replay)
    with pytest.raises(InvalidClient, match="jti already used"):
        _verify(assertion, replay)
    with pytest.raises(InvalidClient, match="jti already used"):
        _verify(_private_key_jwt(iat=NOW + 1), replay, now=NOW + 1)


def test_the_same_jti_from_another_client_is_not_a_replay() -> None:
    replay = ReplayCache()
    _verify(_private_key_jwt(), replay)
    other = _client_secret_jwt(iss="other", sub="other")
    assert _verify(other, replay, client_id="other", hmac_secrets=[SECRET])["jti"] == "a1b2c3"


def test_a_jti_may_be_reused_once_the_first_assertion_has_expired() -> None:
    replay = ReplayCache()
    _verify(_private_key_jwt(exp=NOW + 60), replay)
    # Still replayable within the leeway after exp: the cache keeps it until exp + leeway.
    later = NOW + 60 + 29
    with pytest.raises(InvalidClient, match="jti already used"):
        _verify(_private_key_jwt(iat=later, exp=later + 60), replay, now=later)
    much_later = NOW + 60 + 31
    again = _private_key_jwt(iat=much_later, exp=much_later + 60)
    assert _verify(again, replay, now=much_later)["jti"] == "a1b2c3"


def test_keys_and_secrets_are_exclusive() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        _verify(_private_key_jwt(), keys=CLIENT_JWKS, hmac_secrets=[SECRET])


@pytest.mark.parametrize(
    ("steps", "expected_len", "seen_last"),
    [
        ([("a", 100, 0), ("a", 100, 1)], 1, True),
        ([("a", 100, 0), ("a", 200, 100)], 1, False),
        ([("a", 100, 0), ("b", 100, 0), ("c", 100, 0)], 2, False),
        ([("a", 100, 0), ("b", 100, 0), ("c", 100, 0), ("a", 100, 1)], 2, False),
        ([("a", 100, 0), ("b", 100, 0), ("c", 100, 0), ("c", 100, 1)], 2, True),
        ([("a", 50, 0), ("b", 100, 60)], 1, False),
        ([("a", 10, 20)], 0, False),
    ],
    ids=[
        "a jti is seen again before it expires",
        "a jti is forgotten at its expiry",
        "the cache never holds more than its bound",
        "the oldest entry is evicted first",
        "newer entries survive eviction",
        "expired entries are dropped as time passes",
        "an already expired jti is not recorded",
    ],
)
def test_replay_cache(
    steps: list[tuple[str, float, float]], expected_len: int, seen_last: bool
) -> None:
    cache = ReplayCache(max_entries=2)
    results = [cache.seen("client", jti, exp, now, tenant="t") for jti, exp, now in steps]
    assert results[-1] is seen_last
    assert cache.size == expected_len


def test_the_replay_cache_stays_bounded_under_churn() -> None:
    cache = ReplayCache(max_entries=10)
    for i in range(1000):
        assert not cache.seen("client", str(i), 1e9, 0, tenant="t")
    assert cache.size == 10
    assert len(cache._expiries) <= 20


def test_peek_reads_an_assertion_for_routing_only() -> None:
    header, claims = peek_unverified(_private_key_jwt(exp=NOW - 9999))
    assert header["kid"] == CLIENT_KEY.kid
    assert claims["iss"] == CLIENT


@pytest.mark.parametrize(
    "token",
    ["", "x", "a.b.c", "e30.e30.!", "W10.e30.AA", "e30.W10.AA", "e30.e30." + "A" * 20000],
    ids=[
        "an empty string",
        "one segment",
        "segments that are not base64 JSON",
        "a signature that is not base64url",
        "a header without alg",
        "claims that are a list",
        "a huge token",
    ],
)
def test_peek_refuses_garbage(token: str) -> None:
    with pytest.raises(InvalidJWT):
        peek_unverified(token)
