"""Public JWK Sets supplied by users (client keys for private_key_jwt, federated issuers).

Only asymmetric public keys are accepted: a symmetric (`oct`) key would turn signature checks
into HMAC checks with a published key, and a private member (`d`, `p`, …) means the user
pasted a private key into a manifest — refused, and the message never echoes the key.
"""

from __future__ import annotations

import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from kubemint.crypto import bounded_json
from kubemint.crypto.keys import PRIVATE_MEMBERS, PUBLIC_TYPES

MAX_KEYS = 16


class InvalidJWKS(ValueError):
    """The message names the field and the key index; it never contains key material."""


def parse_public_jwks(data: Any, field: str) -> dict[str, Any]:
    """Validate a JWKS object and return it with only public members."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise InvalidJWKS(f"{field}: a JWK Set must be an object with a 'keys' list")
    if not 1 <= len(data["keys"]) <= MAX_KEYS:
        raise InvalidJWKS(f"{field}: must hold 1 to {MAX_KEYS} keys")
    public = []
    for index, jwk in enumerate(data["keys"]):
        where = f"{field}.keys[{index}]"
        if not isinstance(jwk, dict):
            raise InvalidJWKS(f"{where}: must be an object")
        if jwk.get("kty") not in PUBLIC_TYPES:
            raise InvalidJWKS(f"{where}.kty: must be one of RSA, EC, OKP (asymmetric keys only)")
        if PRIVATE_MEMBERS & set(jwk):
            raise InvalidJWKS(
                f"{where}: contains private key material; publish the public key only"
            )
        try:
            KeySet.import_key_set({"keys": [jwk]})
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidJWKS(
                f"{where}: not a valid {jwk['kty']} public key ({type(exc).__name__})"
            ) from None
        public.append(jwk)
    return {"keys": public}


def parse_key_document(text: str, field: str) -> dict[str, Any]:
    """A JWKS (JSON) or PEM public keys/certificates, as found in a referenced Secret."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            document = bounded_json.loads(stripped)
        except bounded_json.TooDeep:
            raise InvalidJWKS(f"{field}: JSON nested too deeply") from None
        except ValueError:
            raise InvalidJWKS(f"{field}: not valid JSON") from None
        return parse_public_jwks(document, field)
    if "-----BEGIN" in stripped:
        return parse_public_jwks({"keys": _pem_to_jwks(stripped, field)}, field)
    raise InvalidJWKS(f"{field}: expected a JWK Set (JSON) or PEM certificates/public keys")


def _pem_to_jwks(text: str, field: str) -> list[dict[str, Any]]:
    if "PRIVATE KEY" in text:
        raise InvalidJWKS(f"{field}: contains a private key; provide certificates or public keys")
    keys: list[dict[str, Any]] = []
    for index, match in enumerate(_PEM_BLOCK.finditer(text)):
        block = match.group(0).encode()
        public: object
        try:
            if match.group(1) == "CERTIFICATE":
                public = x509.load_pem_x509_certificate(block).public_key()
            else:
                public = serialization.load_pem_public_key(block)
        except ValueError:
            raise InvalidJWKS(f"{field}: PEM block {index} is not readable") from None
        cls = next((c for t, c in _JOSE_TYPES.items() if isinstance(public, t)), None)
        if cls is None:
            raise InvalidJWKS(f"{field}: PEM block {index} holds an unsupported key type")
        assert isinstance(
            public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
        )
        spki = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        key = cls.import_key(spki)
        keys.append({**key.as_dict(private=False), "kid": key.thumbprint()})
    if not keys:
        raise InvalidJWKS(f"{field}: no PEM certificate or public key found")
    return keys


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)
_JOSE_TYPES: dict[type, type[RSAKey] | type[ECKey] | type[OKPKey]] = {
    rsa.RSAPublicKey: RSAKey,
    ec.EllipticCurvePublicKey: ECKey,
    ed25519.Ed25519PublicKey: OKPKey,
}
