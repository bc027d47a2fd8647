"""Sign, encrypt and verify JWTs (RFC 7519, RFC 7515/7516, RFC 8725); the only JWT code.

Every verification spells out its options, as RFC 8725 §3 asks:

- the algorithm is allow-listed by the caller and pinned to the key: a token's `alg` must be
  in `algorithms`, fit the key's type and curve, and equal the key's own `alg` member when it
  has one. `none` is never accepted, and public keys are never used as HMAC secrets;
  HMAC (`client_secret_jwt`) has its own function that takes secrets, not keys;
- the key is chosen by `kid`; a token without `kid` is only accepted when exactly one key fits;
- the signature is checked before any claim is looked at; then `exp` (required by default),
  `nbf` and `iat` are checked against an injected `now` with a small leeway, and `iss` and
  `aud` when the caller names them (they then become required). Claims are checked with
  joserfc's `JWTClaimsRegistry`, which only checks what it is told to (STYLE: JOSE boundary).

Failures raise `InvalidJWT` with a short, stable message that never contains the token, a
claim value or key material, so it can be logged and returned to callers as is.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwe, jws
from joserfc import jwt as joserfc_jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
    SecurityWarning,
)
from joserfc.jwk import ECKey, Key, KeySet, OctKey, OKPKey, RSAKey
from joserfc.jwt import JWTClaimsRegistry

from kubemint.crypto import bounded_json, compact_json
from kubemint.crypto.keys import KeyMaterial, jose_key

MAX_TOKEN_BYTES = 16 * 1024
MIN_RSA_BITS = 2048
MIN_HMAC_SECRET_BYTES = 32  # RFC 7518 §3.2: at least the HS256 hash size

# Asymmetric algorithms verify_jwt understands, each pinned to a key type and curve.
_KEY_FOR_ALG: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
    "Ed25519": ("OKP", "Ed25519"),
}
ASYMMETRIC_ALGORITHMS = tuple(_KEY_FOR_ALG)
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")

ENCRYPTION_ALG = "RSA-OAEP-256"
ENCRYPTION_ENC = "A256CBC-HS512"

# Registered claims whose failures get their own message; the names are ours, never the token's.
_CLAIM_MESSAGES = {
    "exp": "token expired",
    "nbf": "token not yet valid",
    "iat": "token issued in the future",
    "iss": "issuer not accepted",
    "aud": "audience not accepted",
}
_NUMERIC_CLAIMS = ("exp", "nbf", "iat")
_STRING_CLAIMS = ("iss", "sub", "jti")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")

#: Public verification keys: a joserfc KeySet (build it once per JWKS on hot paths), a JWKS
#: object ({"keys": [...]}) or a list of JWK dicts.
VerificationKeys = KeySet | Mapping[str, Any] | Sequence[Mapping[str, Any]]


class InvalidJWT(ValueError):
    """A token was rejected. The message is short and stable, and never holds token content."""


class Signer:
    """Signs JWTs with one private key: the hot path of the token endpoint.

    The key is parsed once and the encoded header is cached per `typ`; signing calls
    `cryptography` directly (RFC 7518 §3: ECDSA signatures as raw r‖s), about twice as fast
    as going through joserfc. Verification (and the round-trip tests) use joserfc.
    """

    def __init__(self, material: KeyMaterial) -> None:
        if material.use != "sig" or material.algorithm not in _SIGNERS:
            raise ValueError(f"key {material.kid} is not a signing key")
        self.kid = material.kid
        self.algorithm = material.algorithm
        self._key = serialization.load_pem_private_key(material.private_pem.encode(), None)
        self._sign = _SIGNERS[material.algorithm]
        self._headers: dict[str, bytes] = {}

    def sign(self, claims: dict[str, Any], typ: str = "at+jwt") -> str:
        """A compact JWS over `claims` with the header {alg, kid, typ}."""
        header = self._headers.get(typ)
        if header is None:
            raw = json.dumps(
                {"alg": self.algorithm, "kid": self.kid, "typ": typ}, separators=(",", ":")
            ).encode()
            header = self._headers[typ] = _b64encode(raw)
        payload = _b64encode(compact_json.dumps(claims))
        signing_input = header + b"." + payload
        return (signing_input + b"." + _b64encode(self._sign(self._key, signing_input))).decode()


class Encrypter:
    """Nests signed JWTs in compact JWEs (RSA-OAEP-256 + A256CBC-HS512, `cty: JWT`)."""

    def __init__(self, material: KeyMaterial) -> None:
        if material.use != "enc" or material.algorithm != ENCRYPTION_ALG:
            raise ValueError(f"key {material.kid} is not an {ENCRYPTION_ALG} encryption key")
        self.kid = material.kid
        self._key = RSAKey.import_key(jose_key(material.private_pem).as_dict(private=False))

    def encrypt(self, jws_token: str) -> str:
        header = {"alg": ENCRYPTION_ALG, "enc": ENCRYPTION_ENC, "cty": "JWT", "kid": self.kid}
        return jwe.encrypt_compact(
            header, jws_token, self._key, algorithms=[ENCRYPTION_ALG, ENCRYPTION_ENC]
        )


class Decrypter:
    """Opens JWEs made by `Encrypter` for the same key; returns the inner JWS (still unverified)."""

    def __init__(self, material: KeyMaterial) -> None:
        if material.use != "enc" or material.algorithm != ENCRYPTION_ALG:
            raise ValueError(f"key {material.kid} is not an {ENCRYPTION_ALG} encryption key")
        self.kid = material.kid
        self._key = jose_key(material.private_pem)

    def decrypt(self, token: str) -> str:
        segments = _segments(token, count=5)
        header = _json_object(_b64decode(segments[0]))
        if header.get("alg") != ENCRYPTION_ALG or header.get("enc") != ENCRYPTION_ENC:
            raise InvalidJWT("algorithm not allowed")
        if header.get("kid", self.kid) != self.kid:
            raise InvalidJWT("unknown key id")
        if header.get("cty") != "JWT" or "zip" in header or "crit" in header:
            raise InvalidJWT("not an encrypted JWT")
        try:
            obj = jwe.decrypt_compact(token, self._key, algorithms=[ENCRYPTION_ALG, ENCRYPTION_ENC])
            plaintext = (obj.plaintext or b"").decode("ascii")
        except (JoseError, ValueError):
            raise InvalidJWT("token does not decrypt") from None
        return plaintext


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWS WITHOUT checking anything but its shape.

    For routing only (which issuer's keys to load); never trust the result.
    """
    segments = _segments(token, count=3)
    header = _header(segments[0])
    claims = _json_object(_b64decode(segments[1]))
    _b64decode(segments[2])
    return header, claims


def verify_jwt(
    token: str,
    keys: VerificationKeys,
    *,
    algorithms: Sequence[str],
    issuer: str | None,
    audience: str | Sequence[str] | None,
    now: float,
    leeway: float = 30,
    require: Sequence[str] = ("exp",),
    max_lifetime: float | None = None,
    typ: str | None = None,
) -> dict[str, Any]:
    """The claims of `token`, signed by one of the asymmetric public `keys`; else `InvalidJWT`.

    `keys`: see `VerificationKeys`; HMAC (`oct`) keys in it are never used.
    `typ`, when given, must match the header's `typ` (RFC 8725 §3.11 explicit typing).
    """
    allowed = _allowed(algorithms, ASYMMETRIC_ALGORITHMS, "verify_hmac_jwt")
    header = _signed_header(token)
    alg = _pinned_alg(header, allowed, typ)
    key = _select_key(_key_list(keys), header, alg)
    claims = _verified_claims(token, [key], alg)
    _check_claims(claims, issuer, audience, now, leeway, require, max_lifetime)
    return claims


def verify_hmac_jwt(
    token: str,
    secrets: Sequence[str | bytes],
    *,
    algorithms: Sequence[str] = HMAC_ALGORITHMS,
    issuer: str | None,
    audience: str | Sequence[str] | None,
    now: float,
    leeway: float = 30,
    require: Sequence[str] = ("exp",),
    max_lifetime: float | None = None,
    typ: str | None = None,
) -> dict[str, Any]:
    """Like `verify_jwt` for HS256/384/512 tokens keyed by shared secrets (`client_secret_jwt`).

    Each secret is tried in turn (an old and a new secret overlap during rotation). Secrets
    shorter than 32 bytes are never used. Only pass client secrets here: never a public key.
    """
    allowed = _allowed(algorithms, HMAC_ALGORITHMS, "verify_jwt")
    header = _signed_header(token)
    alg = _pinned_alg(header, allowed, typ)
    candidates: list[Key] = []
    for secret in secrets:
        raw = secret.encode() if isinstance(secret, str) else secret
        if len(raw) < MIN_HMAC_SECRET_BYTES:
            continue
        try:
            candidates.append(OctKey.import_key(raw))
        except ValueError:  # joserfc refuses PEM/DER/SSH public keys as HMAC secrets
            continue
    claims = _verified_claims(token, candidates, alg)
    _check_claims(claims, issuer, audience, now, leeway, require, max_lifetime)
    return claims


# --- structure ------------------------------------------------------------------------------


def sign_with_header(header: dict[str, Any], claims: dict[str, Any], key: Key) -> str:
    """A compact JWS with a caller-chosen header (client assertions: a client's own `kid`,
    or none); `header["alg"]` must fit `key`. Tokens kubemint issues use `Signer`."""
    alg = str(header["alg"])
    with _allow_eddsa(alg):
        return joserfc_jwt.encode(header, claims, key, algorithms=[alg])


def _b64encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


# The algorithm objects are immutable: made once, not per token.
def _ecdsa(hash_algorithm: hashes.HashAlgorithm, size: int) -> Callable[[Any, bytes], bytes]:
    algorithm = ec.ECDSA(hash_algorithm)

    def sign(key: Any, data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, algorithm))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    return sign


def _rsa(pad: padding.AsymmetricPadding) -> Callable[[Any, bytes], bytes]:
    sha256 = hashes.SHA256()
    return lambda key, data: key.sign(data, pad, sha256)


_SIGNERS: dict[str, Callable[[Any, bytes], bytes]] = {
    "RS256": _rsa(padding.PKCS1v15()),
    "PS256": _rsa(padding.PSS(padding.MGF1(hashes.SHA256()), 32)),
    "ES256": _ecdsa(hashes.SHA256(), 32),
    "ES384": _ecdsa(hashes.SHA384(), 48),
    "EdDSA": lambda key, data: key.sign(data),
}


def protected_header(token: str) -> dict[str, Any]:
    """The first segment's header of a compact JWS or JWE (unverified; routing only)."""
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidJWT("token too large")
    return _header(token.split(".", 1)[0])


def _segments(token: str, count: int) -> list[str]:
    if not isinstance(token, str):
        raise InvalidJWT("malformed token")
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidJWT("token too large")
    if not token.isascii():
        raise InvalidJWT("malformed token")
    segments = token.split(".")
    if len(segments) != count:
        raise InvalidJWT("malformed token")
    return segments


def _b64decode(segment: str) -> bytes:
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise InvalidJWT("malformed token")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidJWT("malformed token") from None


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = bounded_json.loads(raw)  # nesting bounded: never a RecursionError
    except ValueError:
        raise InvalidJWT("malformed token") from None
    if not isinstance(value, dict):
        raise InvalidJWT("malformed token")
    return value


def _header(segment: str) -> dict[str, Any]:
    header = _json_object(_b64decode(segment))
    if not isinstance(header.get("alg"), str) or not isinstance(header.get("kid", ""), str):
        raise InvalidJWT("malformed token")
    return header


def _signed_header(token: str) -> dict[str, Any]:
    segments = _segments(token, count=3)
    header = _header(segments[0])
    if not _B64URL.fullmatch(segments[2]) or len(segments[2]) % 4 == 1:
        raise InvalidJWT("malformed token")
    return header


def _allowed(algorithms: Sequence[str], supported: Sequence[str], other: str) -> frozenset[str]:
    unknown = set(algorithms) - set(supported)
    if unknown or not algorithms:
        # A programming error, not a bad token: e.g. HS256 offered next to public keys.
        raise ValueError(f"unsupported algorithms {sorted(unknown)}; see {other}")
    return frozenset(algorithms)


def _pinned_alg(header: Mapping[str, Any], allowed: frozenset[str], typ: str | None) -> str:
    alg = cast(str, header["alg"])
    if alg not in allowed:  # also `none`, and HMAC in verify_jwt (HMAC-with-public-key)
        raise InvalidJWT("algorithm not allowed")
    # We understand no critical extensions; RFC 7797 `b64` would change what is signed.
    if "crit" in header or "b64" in header:
        raise InvalidJWT("unsupported critical header")
    if typ is not None and _media_type(header.get("typ")) != _media_type(typ):
        raise InvalidJWT("unexpected token type")
    return alg


def _media_type(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.lower()
    return value.removeprefix("application/")


# --- keys -----------------------------------------------------------------------------------


PreparedKeys = KeySet  # what prepared_keys returns, for modules that must not import joserfc


def prepared_keys(keys: VerificationKeys) -> PreparedKeys:
    """Parse a key set once, for callers verifying many tokens against the same keys."""
    return KeySet(_key_list(keys))


def _key_list(keys: VerificationKeys) -> list[Key]:
    if isinstance(keys, KeySet):
        return list(keys.keys)
    try:
        jwks = keys.get("keys", ()) if isinstance(keys, Mapping) else keys
        return list(KeySet.import_key_set({"keys": [dict(k) for k in jwks]}).keys)
    except (JoseError, ValueError, TypeError, KeyError, AttributeError):
        raise InvalidJWT("no usable verification key") from None


def _fits(key: Key, alg: str) -> bool:
    """Whether `key` may verify `alg`: type, curve, size, `use`, `key_ops` and `alg` members."""
    kty, curve = _KEY_FOR_ALG[alg]
    if key.key_type != kty or key.get("alg") not in (None, alg):
        return False
    if key.get("use") not in (None, "sig"):
        return False
    key_ops = key.get("key_ops")
    if key_ops is not None and "verify" not in key_ops:
        return False
    if isinstance(key, RSAKey):
        return key.raw_value.key_size >= MIN_RSA_BITS
    if isinstance(key, ECKey | OKPKey):
        return key.curve_name == curve
    return False


def _select_key(keys: list[Key], header: Mapping[str, Any], alg: str) -> Key:
    kid = header.get("kid")
    if kid is not None:
        named = [key for key in keys if key.kid == kid]
        if not named:
            raise InvalidJWT("unknown key id")
        fitting = [key for key in named if _fits(key, alg)]
        if not fitting:
            raise InvalidJWT("key does not match algorithm")
        return fitting[0]
    fitting = [key for key in keys if _fits(key, alg)]
    if not fitting:
        raise InvalidJWT("key does not match algorithm")
    if len(fitting) > 1:
        raise InvalidJWT("key id required")
    return fitting[0]


# --- signature and claims -------------------------------------------------------------------


@contextmanager
def _allow_eddsa(alg: str) -> Iterator[None]:
    """Silence joserfc's "EdDSA is deprecated via RFC 9864" warning around EdDSA operations.

    joserfc 1.8 warns on every use of the polymorphic `EdDSA` name; kubemint signs and
    verifies it on purpose (pinned to Ed25519 keys) because that is what deployed verifiers
    understand. Only this one warning is ignored, and only around the joserfc call.
    `catch_warnings` swaps the process-wide filter list, so a thread racing through here can
    at worst see that one harmless warning printed, or keep the ignore filter.
    """
    if alg != "EdDSA":
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="EdDSA is deprecated via RFC 9864", category=SecurityWarning
        )
        yield


def _verified_claims(token: str, candidates: Sequence[Key], alg: str) -> dict[str, Any]:
    registry = jws.JWSRegistry(algorithms=[alg], strict_check_header=False)
    # joserfc caps headers at 512 bytes; an `x5c` chain is longer. The token cap still holds.
    registry.max_header_length = MAX_TOKEN_BYTES
    for key in candidates:
        try:
            with _allow_eddsa(alg):
                obj = jws.deserialize_compact(token, key, registry=registry)
        except BadSignatureError:
            continue
        except JoseError:
            raise InvalidJWT("malformed token") from None
        return _json_object(obj.payload)
    raise InvalidJWT("signature does not verify")


def _check_claims(
    claims: dict[str, Any],
    issuer: str | None,
    audience: str | Sequence[str] | None,
    now: float,
    leeway: float,
    require: Sequence[str],
    max_lifetime: float | None,
) -> None:
    for name in _NUMERIC_CLAIMS:
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidJWT(f"invalid claim: {name}")
        if isinstance(value, float) and not math.isfinite(value):  # json.loads reads NaN
            raise InvalidJWT(f"invalid claim: {name}")
    for name in _STRING_CLAIMS:
        if name in claims and not isinstance(claims[name], str):
            raise InvalidJWT(f"invalid claim: {name}")
    aud = claims.get("aud")
    if aud is not None and not (
        isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
    ):
        raise InvalidJWT("invalid claim: aud")

    options: dict[str, Any] = {name: {"essential": True} for name in require}
    if issuer is not None:
        options["iss"] = {"essential": True, "value": issuer}
    if audience is not None:
        accepted = [audience] if isinstance(audience, str) else list(audience)
        options["aud"] = {"essential": True, "values": accepted}
    # joserfc compares numerically; a float `now`/`leeway` is exact (its hints say int).
    registry = JWTClaimsRegistry(now=cast(int, now), leeway=cast(int, leeway), **options)
    try:
        registry.validate(claims)
    except MissingClaimError as error:
        raise InvalidJWT(f"missing claim: {error.claim}") from None
    except ExpiredTokenError:
        raise InvalidJWT("token expired") from None
    except ClaimError as error:
        message = _CLAIM_MESSAGES.get(error.claim)
        raise InvalidJWT(message or "invalid claim") from None

    if max_lifetime is not None:
        if "exp" not in claims:
            raise InvalidJWT("missing claim: exp")
        start = claims.get("iat", now)
        if claims["exp"] - start > max_lifetime:
            raise InvalidJWT("token lifetime too long")
