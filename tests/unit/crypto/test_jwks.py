"""User-supplied public keys: asymmetric and public only, messages never echo key material."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubemint.crypto import keys
from kubemint.crypto.jwks import InvalidJWKS, parse_key_document, parse_public_jwks

PUBLIC = keys.generate("ES256").public_jwk()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"keys": []}, "1 to 16 keys"),
        ([PUBLIC], "object with a 'keys' list"),
        ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "keys[0].kty"),
        ({"keys": [{**PUBLIC, "d": "AAAA"}]}, "private key material"),
        ({"keys": [{"kty": "EC", "crv": "P-256", "x": "bad", "y": "bad"}]}, "not a valid EC"),
        ({"keys": [PUBLIC, "x"]}, "keys[1]: must be an object"),
    ],
    ids=[
        "an empty set",
        "a bare list",
        "a symmetric key",
        "a private key",
        "a malformed EC key",
        "a non-object entry",
    ],
)
def test_bad_key_sets_are_refused_naming_the_entry(data: Any, message: str) -> None:
    with pytest.raises(InvalidJWKS, match=r"spec\.jwks") as caught:
        parse_public_jwks(data, "spec.jwks")
    assert message in str(caught.value)
    assert "AAAA" not in str(caught.value)


def test_a_public_set_is_accepted() -> None:
    assert parse_public_jwks({"keys": [PUBLIC]}, "spec.jwks") == {"keys": [PUBLIC]}


def test_a_secret_may_hold_json_or_pem_certificates() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    parsed = parse_key_document(pem, "Secret s key k")
    assert parsed["keys"][0]["kty"] == "EC"
    assert "kid" in parsed["keys"][0]
    assert parse_key_document(json.dumps({"keys": [PUBLIC]}), "x") == {"keys": [PUBLIC]}


def test_a_pem_private_key_is_refused() -> None:
    pem = keys.generate("ES256").private_pem
    with pytest.raises(InvalidJWKS, match="contains a private key"):
        parse_key_document(pem, "Secret s key k")
