"""When the issuer's JWKS cannot be fetched, tokens cannot be verified now: that is a 503 with
Retry-After, never a 500 and never a verdict on the token; and the cooldown keeps an outage
from turning every request into a fetch."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from kubemint.crypto import keys
from kubemint.crypto.jwt import Signer
from kubemint.verify import InvalidToken, JWKSCache, VerificationUnavailable, Verifier
from kubemint.verify.middleware import BearerAuthMiddleware

ISSUER = "https://issuer.test"
AUDIENCE = "https://api.test"
KEY = keys.generate("ES256")
OTHER = keys.generate("ES256")


def _token(material: keys.KeyMaterial = KEY) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "tasks.app",
        "client_id": "tasks.app",
        "iat": now,
        "exp": now + 300,
        "scope": "read",
    }
    return Signer(material).sign(claims)


class Issuer:
    """A JWKS endpoint that can go down, counting fetches, on a hand-driven clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.fetches = 0
        self.down: Exception | None = None
        self.document: Any = {"keys": [KEY.public_jwk()]}

    def fetch(self, url: str) -> dict[str, Any]:
        self.fetches += 1
        if self.down is not None:
            raise self.down
        document: dict[str, Any] = self.document
        return document

    def verifier(self, ttl: float = 300, cooldown: float = 10) -> Verifier:
        cache = JWKSCache(
            ISSUER + "/oauth2/jwks",
            ttl=ttl,
            cooldown=cooldown,
            fetch=self.fetch,
            clock=lambda: self.now,
        )
        return Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=cache)


def _settle(done: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a background fetch to have happened (it runs in its own thread)."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


OUTAGES = {
    "connection refused": httpx.ConnectError("connection refused"),
    "an HTTP error": httpx.HTTPStatusError(
        "503", request=httpx.Request("GET", ISSUER), response=httpx.Response(503)
    ),
    "a document that is not JSON": ValueError("Expecting value: line 1 column 1"),
}


@pytest.mark.parametrize("outage", OUTAGES.values(), ids=OUTAGES.keys())
def test_a_failing_fetch_is_a_distinct_temporary_error(outage: Exception) -> None:
    issuer = Issuer()
    issuer.down = outage
    with pytest.raises(VerificationUnavailable) as caught:
        issuer.verifier(cooldown=10).verify(_token())
    assert not isinstance(caught.value, InvalidToken)
    assert 1 <= caught.value.retry_after <= 10


@pytest.mark.parametrize("document", [{"nokeys": []}, ["not", "a", "set"], {"keys": "x"}])
def test_a_document_that_is_not_a_jwk_set_is_a_temporary_error(document: Any) -> None:
    issuer = Issuer()
    issuer.document = document
    with pytest.raises(VerificationUnavailable):
        issuer.verifier().verify(_token())


def test_an_outage_is_fetched_at_most_once_per_cooldown() -> None:
    issuer = Issuer()
    issuer.down = httpx.ConnectError("down")
    verifier = issuer.verifier(cooldown=10)
    for _ in range(5):
        with pytest.raises(VerificationUnavailable):
            verifier.verify(_token())
    assert issuer.fetches == 1
    issuer.now += 4
    with pytest.raises(VerificationUnavailable) as caught:
        verifier.verify(_token())
    assert caught.value.retry_after == 6  # until the cooldown since the last attempt ends
    assert issuer.fetches == 1
    issuer.now += 6.5
    issuer.down = None
    assert verifier.verify(_token())["sub"] == "tasks.app"  # recovered: fetched again
    assert issuer.fetches == 2


def test_known_keys_keep_verifying_while_the_issuer_is_down() -> None:
    issuer = Issuer()
    verifier = issuer.verifier(ttl=300, cooldown=10)
    assert verifier.verify(_token())["sub"] == "tasks.app"
    issuer.down = httpx.ConnectError("down")
    issuer.now += 301  # stale: a refetch is attempted (in the background) and fails
    assert verifier.verify(_token())["sub"] == "tasks.app"
    assert verifier.verify(_token())["sub"] == "tasks.app"
    _settle(lambda: issuer.fetches == 2)  # the failed attempt, once: the cooldown holds the rest
    assert issuer.fetches == 2
    with pytest.raises(VerificationUnavailable):  # a kid it cannot look up now
        verifier.verify(_token(OTHER))


def test_an_unknown_kid_is_still_invalid_while_the_issuer_answers() -> None:
    issuer = Issuer()
    with pytest.raises(InvalidToken, match="unknown signing key"):
        issuer.verifier().verify(_token(OTHER))


def _app(verifier: Verifier) -> TestClient:
    async def read(request: Request) -> Response:
        return JSONResponse({"sub": request.state.claims["sub"]})

    app = Starlette(routes=[Route("/read", read)])
    app.add_middleware(BearerAuthMiddleware, verifier=verifier)  # type: ignore[arg-type]
    return TestClient(app, raise_server_exceptions=False)


def test_the_middleware_answers_503_with_retry_after_when_keys_cannot_be_fetched() -> None:
    issuer = Issuer()
    issuer.down = httpx.ConnectError("down")
    with _app(issuer.verifier(cooldown=10)) as client:
        response = client.get("/read", headers={"Authorization": f"Bearer {_token()}"})
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"] == "10"
    assert "www-authenticate" not in response.headers  # not a verdict on the token


def test_the_middleware_still_verifies_and_challenges_when_the_issuer_is_up() -> None:
    issuer = Issuer()
    with _app(issuer.verifier()) as client:
        ok = client.get("/read", headers={"Authorization": f"Bearer {_token()}"})
        stranger = client.get("/read", headers={"Authorization": f"Bearer {_token(OTHER)}"})
    assert ok.status_code == 200
    assert ok.json() == {"sub": "tasks.app"}
    assert stranger.status_code == 401
    assert 'error="invalid_token"' in stranger.headers["www-authenticate"]
