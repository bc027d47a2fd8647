"""Opaque access tokens: self-contained, encrypted, readable only by the token server.

`tokenFormat: opaque` tokens carry their claims in a compact JWE (`dir`, `A256GCM`), behind a
`kmint_at_` prefix so secret scanners recognise them. No token store exists: introspection
decrypts them. The AES key is derived with HKDF-SHA256 from the client's SigningKey private
key and its kid, so every replica (they all read the signing Secret) holds it without another
Secret, and tokens stay readable as long as their key is retained after a rotation.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from kubemint.crypto import bounded_json, compact_json
from kubemint.crypto.jwt import InvalidJWT
from kubemint.crypto.keys import KeyMaterial, PublicMaterial

PREFIX = "kmint_at_"
INFO = b"kubemint opaque access token v1"
MAX_TOKEN = 16 * 1024


def derive_secret(material: KeyMaterial) -> bytes:
    """The AES key of a signing key's opaque tokens: HKDF over its private key, salted with
    its kid. A retired key keeps only this (kubemint.crypto.custody): it opens the opaque
    tokens the key sealed and cannot sign a JWT."""
    private = serialization.load_pem_private_key(material.private_pem.encode(), None)
    der = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return HKDF(hashes.SHA256(), 32, salt=material.kid.encode(), info=INFO).derive(der)


class OpaqueKey:
    def __init__(self, material: KeyMaterial | PublicMaterial) -> None:
        if isinstance(material, PublicMaterial):
            if material.opaque_secret is None:
                raise ValueError(f"key {material.kid} keeps no opaque-token key")
            secret = _b64decode(material.opaque_secret)
        else:
            secret = derive_secret(material)
        self.kid = material.kid
        self._key = OctKey.import_key(secret)

    def seal(self, claims: dict[str, Any]) -> str:
        header = {"alg": "dir", "enc": "A256GCM", "kid": self.kid, "typ": "at+jwt"}
        payload = compact_json.dumps(claims)
        return PREFIX + jwe.encrypt_compact(header, payload, self._key)

    def open(self, token: str) -> dict[str, Any]:
        try:
            data = jwe.decrypt_compact(token.removeprefix(PREFIX), self._key)
            claims = bounded_json.loads(data.plaintext or b"")
        except (JoseError, ValueError, TypeError, RecursionError):
            raise InvalidJWT("token does not decrypt") from None
        if not isinstance(claims, dict):
            raise InvalidJWT("token does not decrypt")
        return claims


def opaque_kid(token: str) -> str | None:
    """The kid an opaque token was sealed with (routing only), or None if not opaque."""
    if not token.startswith(PREFIX) or len(token) > MAX_TOKEN:
        return None
    try:
        header_segment = token.removeprefix(PREFIX).split(".", 1)[0]
        padded = header_segment + "=" * (-len(header_segment) % 4)
        # Unauthenticated input: nesting is bounded (a deep header was a RecursionError).
        header = bounded_json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError, binascii.Error):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def encode_secret(secret: bytes) -> str:
    return base64.urlsafe_b64encode(secret).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    secret = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(secret) != 32:
        raise ValueError("an opaque-token key is 32 bytes")
    return secret
