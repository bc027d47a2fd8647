"""Generate and load SigningKey material per algorithm; key ids are RFC 7638 thumbprints.

Keys are generated with `cryptography` and stored as PKCS#8 PEM; joserfc turns them into
JWKs. Each algorithm is pinned to exactly one key type (no HMAC, no `none`), so a key can
never be used with an algorithm it was not made for.
"""

from __future__ import annotations

from collections.abc import Mapping
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


@dataclass(frozen=True)
class PublicMaterial:
    """What a retired signing key keeps: its public JWK, which verifies and cannot sign, and
    (when given) the key that opens opaque tokens sealed with it (kubemint.crypto.opaque),
    which cannot sign a JWT either. `jwk` holds public members only (see `public_members`)."""

    kid: str
    algorithm: str
    use: str
    jwk: Mapping[str, Any]
    opaque_secret: str | None = None  # base64url, 32 bytes

    def public_jwk(self) -> dict[str, Any]:
        return {**self.jwk, "kid": self.kid, "alg": self.algorithm, "use": self.use}


Material = KeyMaterial | PublicMaterial

# JWK members that carry private key material (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
PUBLIC_TYPES = frozenset({"RSA", "EC", "OKP"})


def public_members(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """A stored public JWK, checked: an asymmetric key with no private member (ValueError)."""
    if not isinstance(jwk, Mapping) or jwk.get("kty") not in PUBLIC_TYPES:
        raise ValueError("not an asymmetric public JWK")
    if PRIVATE_MEMBERS & set(jwk):
        raise ValueError("a public JWK must hold no private member")
    return dict(jwk)


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
    # The thumbprint from the key object: re-reading the PEM would check the RSA key again
    # (most of a second of CPU for 4096 bits) for a key made a moment ago.
    jose: JoseKey
    if isinstance(key, rsa.RSAPrivateKey):
        jose = RSAKey.import_key(key)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        jose = ECKey.import_key(key)
    else:
        jose = OKPKey.import_key(key)
    return KeyMaterial(kid=jose.thumbprint(), algorithm=algorithm, use=use, private_pem=pem)


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
        return rsa_key_size(material.private_pem) == (key_size or DEFAULT_RSA_BITS)
    return True


def rsa_key_size(private_pem: str) -> int:
    """The modulus size of a stored RSA key, cheaply: only its size is read and nothing is
    signed with the object, so the RSA consistency check (up to seconds of CPU for 4096
    bits, on every reconcile) is skipped. The keys are the operator's own, from its Secret."""
    loaded = serialization.load_pem_private_key(
        private_pem.encode(), password=None, unsafe_skip_rsa_key_validation=True
    )
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise UnsupportedAlgorithm(f"not an RSA key: {type(loaded).__name__}")
    return loaded.key_size
