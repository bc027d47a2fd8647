"""RFC 6749 §2.3.1 Basic credentials: anything malformed is invalid_client, never a 500
(non-ASCII after `Basic ` raised ValueError from base64; found by the fuzz test)."""

from __future__ import annotations

import base64

import pytest

from kubemint.oauth.client_auth import basic_credentials
from kubemint.oauth.errors import InvalidClient


def test_urlencoded_id_and_secret_are_decoded() -> None:
    value = base64.b64encode(b"ns.web:s%3Acret+x").decode()
    assert basic_credentials(f"Basic {value}") == ("ns.web", "s:cret x")
    assert basic_credentials(None) is None


@pytest.mark.parametrize(
    "header",
    [
        "Basic \x80",
        "Basic é",
        "Basic 中文",
        "Basic !!!!",
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Bearer abc",
    ],
)
def test_malformed_credentials_are_invalid_client(header: str) -> None:
    with pytest.raises(InvalidClient):
        basic_credentials(header)
