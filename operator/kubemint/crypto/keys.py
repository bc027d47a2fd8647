"""Generate and load SigningKey material per algorithm; key ids are RFC 7638 thumbprints.

Keys are generated with `cryptography` and stored as PKCS#8 PEM; joserfc turns them into
JWKs. Each algorithm is pinned to exactly one key type (no HMAC, no `none`), so a key can
never be used with an algorithm it was not made for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc.jwk import ECKey, OKPKey, RSAKey

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
JoseKey = RSAKey | ECKey | OKPKey

RSA_ALGORITHMS = frozenset({"RS256", "PS256", "RSA-OAEP-256"})
SIGNING_ALGORITHMS = ("RS256", "PS256", "ES256", "ES384", "EdDSA")
ENCRYPTION_ALGORITHMS = ("RSA-OAEP-256",)
DEFAULT_RSA_BITS = 2048
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}


class UnsupportedAlgorithm(ValueError):
    pass


@dataclass(frozen=True)
class KeyMaterial:
    """A private key in PEM with the public facts about it (safe to log: kid, alg, use)."""

    kid: str
    algorithm: str
    use: str  # "sig" | "enc"
    private_pem: str

    def public_jwk(self) -> dict[str, Any]:
        jwk = jose_key(self.private_pem).as_dict(private=False)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": self.use}


def use_of(algorithm: str) -> str:
    if algorithm in SIGNING_ALGORITHMS:
        return "sig"
    if algorithm in ENCRYPTION_ALGORITHMS:
        return "enc"
    raise UnsupportedAlgorithm(f"unsupported algorithm {algorithm!r}")


def generate(algorithm: str, key_size: int | None = None) -> KeyMaterial:
    """A new private key for `algorithm`."""
    use = use_of(algorithm)
    key: PrivateKey
    if algorithm in RSA_ALGORITHMS:
        key = rsa.generate_private_key(public_exponent=65537, key_size=key_size or DEFAULT_RSA_BITS)
    elif algorithm in _CURVES:
        key = ec.generate_private_key(_CURVES[algorithm]())
    else:  # EdDSA
        key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return KeyMaterial(
        kid=jose_key(pem).thumbprint(), algorithm=algorithm, use=use, private_pem=pem
    )


def jose_key(private_pem: str) -> JoseKey:
    """The joserfc key for a PEM private key, by its type."""
    loaded = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if isinstance(loaded, rsa.RSAPrivateKey):
        return RSAKey.import_key(private_pem)
    if isinstance(loaded, ec.EllipticCurvePrivateKey):
        return ECKey.import_key(private_pem)
    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        return OKPKey.import_key(private_pem)
    raise UnsupportedAlgorithm(f"unsupported key type {type(loaded).__name__}")


def matches(material: KeyMaterial, algorithm: str, key_size: int | None) -> bool:
    """Whether a stored key still fits the SigningKey's spec (an edited spec means a new key)."""
    if material.algorithm != algorithm:
        return False
    if algorithm in RSA_ALGORITHMS:
        loaded = serialization.load_pem_private_key(material.private_pem.encode(), password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        return loaded.key_size == (key_size or DEFAULT_RSA_BITS)
    return True
