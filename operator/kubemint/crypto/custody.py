"""What a retired key keeps: a retired signing key only verifies, so it keeps no private key.

A signing key that stops signing keeps its public JWK (tokens it signed keep verifying) and
the key that opens the opaque tokens it sealed (an HKDF output: it cannot sign a JWT). An
encryption key is different: its private part is what reads the tokens encrypted to it, so a
retired one keeps it until it is removed (nothing is encrypted to it any more).
"""

from __future__ import annotations

from kubemint.crypto.keys import KeyMaterial, Material, PublicMaterial, public_members
from kubemint.crypto.opaque import derive_secret, encode_secret


def verify_only(material: Material) -> Material:
    """The part of a key that a retired key keeps (idempotent: public material stays)."""
    if isinstance(material, PublicMaterial) or material.use != "sig":
        return material
    jwk = material.public_jwk()
    for member in ("kid", "alg", "use"):
        jwk.pop(member, None)
    return PublicMaterial(
        kid=material.kid,
        algorithm=material.algorithm,
        use=material.use,
        jwk=public_members(jwk),
        opaque_secret=encode_secret(derive_secret(material)),
    )


def holds_private_key(material: Material) -> bool:
    return isinstance(material, KeyMaterial)
