"""What a retired key keeps (kubemint.crypto.custody), with real keys of every algorithm."""

from __future__ import annotations

import time

import pytest

from kubemint.crypto import custody, keys
from kubemint.crypto.jwt import Signer, verify_jwt
from kubemint.crypto.keys import KeyMaterial, PublicMaterial
from kubemint.crypto.opaque import OpaqueKey


@pytest.mark.parametrize("algorithm", ["ES256", "ES384", "EdDSA", "RS256", "PS256"])
def test_a_retired_signing_key_keeps_a_public_jwk_that_verifies_and_no_private_key(
    algorithm: str,
) -> None:
    material = keys.generate(algorithm)
    now = int(time.time())
    token = Signer(material).sign({"iss": "https://i.test", "exp": now + 60, "iat": now})
    kept = custody.verify_only(material)
    assert isinstance(kept, PublicMaterial)
    assert not custody.holds_private_key(kept)
    assert not keys.PRIVATE_MEMBERS & set(kept.public_jwk())
    assert kept.public_jwk() == material.public_jwk()
    claims = verify_jwt(
        token, [kept.public_jwk()], algorithms=[algorithm], issuer=None, audience=None, now=now
    )
    assert claims["iss"] == "https://i.test"
    assert custody.verify_only(kept) is kept  # idempotent


def test_an_opaque_token_sealed_before_retirement_still_opens() -> None:
    material = keys.generate("ES256")
    token = OpaqueKey(material).seal({"sub": "x", "exp": 1})
    kept = custody.verify_only(material)
    assert OpaqueKey(kept).open(token) == {"sub": "x", "exp": 1}


def test_a_retired_encryption_key_keeps_its_private_key_to_decrypt() -> None:
    material = keys.generate("RSA-OAEP-256")
    kept = custody.verify_only(material)
    assert kept is material
    assert isinstance(kept, KeyMaterial)


def test_a_public_jwk_with_a_private_member_is_refused() -> None:
    private = keys.jose_key(keys.generate("ES256").private_pem).as_dict(private=True)
    with pytest.raises(ValueError, match="no private member"):
        keys.public_members(private)
    with pytest.raises(ValueError, match="asymmetric"):
        keys.public_members({"kty": "oct", "k": "c2VjcmV0"})
