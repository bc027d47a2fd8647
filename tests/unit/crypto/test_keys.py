"""Key generation per algorithm, kids as RFC 7638 thumbprints, public JWKs without secrets."""

from __future__ import annotations

import pytest
from joserfc import jws
from joserfc.jwk import KeySet

from kubemint.crypto import keys


# RFC 9864 deprecates the polymorphic "EdDSA" name in favour of "Ed25519"; the CRD contract
# still says EdDSA, so joserfc's deprecation warning is expected for that one algorithm.
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize("algorithm", keys.SIGNING_ALGORITHMS)
def test_a_generated_signing_key_signs_and_its_public_jwk_verifies(algorithm: str) -> None:
    material = keys.generate(algorithm)
    token = jws.serialize_compact(
        {"alg": algorithm, "kid": material.kid},
        b"payload",
        keys.jose_key(material.private_pem),
        algorithms=[algorithm],
    )
    public = KeySet.import_key_set({"keys": [material.public_jwk()]})
    assert jws.deserialize_compact(token, public, algorithms=[algorithm]).payload == b"payload"


@pytest.mark.parametrize("algorithm", [*keys.SIGNING_ALGORITHMS, *keys.ENCRYPTION_ALGORITHMS])
def test_the_public_jwk_names_kid_alg_use_and_holds_no_private_member(algorithm: str) -> None:
    material = keys.generate(algorithm)
    jwk = material.public_jwk()
    assert jwk["kid"] == material.kid == keys.jose_key(material.private_pem).thumbprint()
    assert jwk["alg"] == algorithm
    assert jwk["use"] == ("enc" if algorithm == "RSA-OAEP-256" else "sig")
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)


def test_rsa_key_size_is_honoured_and_checked() -> None:
    material = keys.generate("RS256", 3072)
    assert keys.matches(material, "RS256", 3072)
    assert not keys.matches(material, "RS256", 2048)
    assert not keys.matches(material, "PS256", 3072)


def test_an_unknown_algorithm_is_refused() -> None:
    with pytest.raises(keys.UnsupportedAlgorithm, match="HS256"):
        keys.generate("HS256")
