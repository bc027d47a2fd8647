"""Client assertions the workload side signs, checked by the token server's own verifier."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kubemint.client.credentials import Credentials, CredentialsError
from kubemint.crypto import keys, secrets
from kubemint.crypto.client_assertions import private_key_assertion, secret_assertion
from kubemint.oauth.assertions import ReplayCache, verify_client_assertion

TOKEN_URL = "https://kubemint.test/oauth2/token"
CLIENT = "tasks.reporter"


def _verify(assertion: str, **key: object) -> dict[str, object]:
    return verify_client_assertion(
        assertion,
        client_id=CLIENT,
        tenant="tasks",
        token_endpoint=TOKEN_URL,
        issuer="https://kubemint.test",
        replay=ReplayCache(),
        now=time.time(),
        **key,  # type: ignore[arg-type]
    )


def test_a_secret_assertion_verifies_with_the_secret() -> None:
    secret = secrets.generate_secret()
    claims = _verify(secret_assertion(CLIENT, secret, TOKEN_URL), hmac_secrets=[secret])
    assert claims["iss"] == claims["sub"] == CLIENT
    assert claims["aud"] == TOKEN_URL
    assert int(claims["exp"]) - int(claims["iat"]) == 60  # type: ignore[call-overload]


def test_each_assertion_is_single_use() -> None:
    secret = secrets.generate_secret()
    first, second = (secret_assertion(CLIENT, secret, TOKEN_URL) for _ in range(2))
    assert json.dumps(_verify(first, hmac_secrets=[secret])) != json.dumps(
        _verify(second, hmac_secrets=[secret])
    )


@pytest.mark.parametrize("algorithm", ["ES256", "ES384", "RS256", "EdDSA"])
def test_a_pem_private_key_signs_with_its_algorithm(algorithm: str) -> None:
    material = keys.generate(algorithm)
    assertion = private_key_assertion(CLIENT, material.private_pem, TOKEN_URL)
    assert _verify(assertion, keys=[material.public_jwk()])["sub"] == CLIENT


def test_a_private_jwk_puts_its_kid_in_the_header() -> None:
    material = keys.generate("ES256")
    document = {**keys.jose_key(material.private_pem).as_dict(private=True), "kid": "reporter-1"}
    assertion = private_key_assertion(CLIENT, json.dumps(document), TOKEN_URL)
    other = keys.generate("ES256").public_jwk()
    registered = [{**material.public_jwk(), "kid": "reporter-1"}, other]
    assert _verify(assertion, keys=registered)["sub"] == CLIENT


def test_a_public_key_or_garbage_is_refused_without_echoing_it() -> None:
    public = json.dumps(keys.generate("ES256").public_jwk())
    with pytest.raises(ValueError, match="public key"):
        private_key_assertion(CLIENT, public, TOKEN_URL)
    with pytest.raises(ValueError, match="cannot be read") as caught:
        private_key_assertion(CLIENT, "-----BEGIN PRIVATE KEY-----\nnot-a-key", TOKEN_URL)
    assert "not-a-key" not in str(caught.value)


def _directory(tmp_path: Path, method: str, secret: str | None = None) -> Path:
    (tmp_path / "client-id").write_text(CLIENT)
    (tmp_path / "token-url").write_text(TOKEN_URL)
    (tmp_path / "auth-method").write_text(method)
    if secret is not None:
        (tmp_path / "client-secret").write_text(secret)
    return tmp_path


def test_credentials_sign_for_client_secret_jwt(tmp_path: Path) -> None:
    secret = secrets.generate_secret()
    form, basic = Credentials.from_directory(
        _directory(tmp_path, "client_secret_jwt", secret)
    ).authentication()
    assert basic is None
    assert secret not in json.dumps(form)
    assert _verify(form["client_assertion"], hmac_secrets=[secret])["sub"] == CLIENT


def test_credentials_for_private_key_jwt_need_the_key(tmp_path: Path) -> None:
    directory = _directory(tmp_path, "private_key_jwt")
    with pytest.raises(CredentialsError, match="needs the client's private key"):
        Credentials.from_directory(directory).authentication()
    material = keys.generate("ES256")
    (directory / "private-key").write_text(material.private_pem)
    form, _ = Credentials.from_directory(directory).authentication()
    assert _verify(form["client_assertion"], keys=[material.public_jwk()])["sub"] == CLIENT
