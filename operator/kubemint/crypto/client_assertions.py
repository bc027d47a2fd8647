"""Client assertions a workload signs to authenticate (RFC 7523 §2.2): `client_secret_jwt`
(HS256 with the client secret) and `private_key_jwt` (the client's own private key).

Each assertion is short-lived (60 s), single-use (a random `jti`) and addressed to the token
endpoint, which is what kubemint's token server demands.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from joserfc.jwk import ECKey, JWKRegistry, OctKey, OKPKey, RSAKey

from kubemint.crypto.jwt import sign_with_header
from kubemint.crypto.keys import jose_key

LIFETIME = 60
_CURVE_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "Ed25519": "EdDSA"}


def _claims(client_id: str, token_url: str, now: float) -> dict[str, Any]:
    issued = int(now)
    return {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": issued,
        "exp": issued + LIFETIME,
        "jti": secrets.token_urlsafe(24),
    }


def secret_assertion(client_id: str, secret: str, token_url: str, now: float | None = None) -> str:
    """client_secret_jwt: HS256 keyed with the client secret."""
    key = OctKey.import_key(secret.encode())
    claims = _claims(client_id, token_url, time.time() if now is None else now)
    return sign_with_header({"alg": "HS256", "typ": "JWT"}, claims, key)


def private_key_assertion(
    client_id: str, private_key: str, token_url: str, now: float | None = None
) -> str:
    """private_key_jwt: signed with the client's key, given as PEM or as a private JWK (whose
    `kid` and `alg`, when present, go into the header)."""
    header: dict[str, Any] = {"typ": "JWT"}
    document: dict[str, Any] = {}
    try:
        if private_key.lstrip().startswith("{"):
            document = json.loads(private_key)
            key = JWKRegistry.import_key(document)
        else:
            key = jose_key(private_key)
    except (ValueError, TypeError, KeyError) as exc:  # never echo the key material
        raise ValueError(f"the private key cannot be read ({type(exc).__name__})") from None
    if not key.is_private:
        raise ValueError("the key file holds a public key; private_key_jwt needs the private")
    if document.get("kid"):
        header["kid"] = document["kid"]
    algorithm = document.get("alg") or _algorithm(key)  # a clear error for unsupported keys
    header["alg"] = algorithm
    claims = _claims(client_id, token_url, time.time() if now is None else now)
    return sign_with_header(header, claims, key)


def _algorithm(key: Any) -> str:
    if isinstance(key, RSAKey):
        return "RS256"
    if isinstance(key, (ECKey, OKPKey)):
        curve = key.curve_name
        if curve in _CURVE_ALGORITHMS:
            return _CURVE_ALGORITHMS[curve]
        raise ValueError(f"unsupported curve {curve}")
    raise ValueError("unsupported key type")
