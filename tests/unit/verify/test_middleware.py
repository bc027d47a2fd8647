"""The middleware on a real server: a JWKS fetch for one request never stalls the others.

Issue 10 finding 7: the middleware fetched JWKS synchronously on the event loop, so one token
with an unknown `kid` against a slow issuer stalled every request of the host, even exempt
health checks. Here a real Starlette app runs under uvicorn on loopback, against a real
JWKS server on loopback that can hold its answer (until the test lets it go) or drip it
byte by byte; while an unknown-kid request waits on it, the others must answer at once.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kubemint.crypto import keys
from kubemint.crypto.jwt import Signer
from kubemint.verify import JWKSCache, Verifier
from kubemint.verify.middleware import BearerAuthMiddleware

ISSUER = "https://issuer.test"
AUDIENCE = "https://api.test"
KEY = keys.generate("ES256")
UNPUBLISHED = keys.generate("ES256")
PROMPT = 1.0  # seconds: what "at once" means here (the held fetch lasts until released)
COOLDOWN = 0.3  # between fetches; the tests wait it out after the first fill


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


def _bearer(material: keys.KeyMaterial = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(material)}"}


@dataclass
class SlowIssuer:
    """A JWKS endpoint on loopback: answers at once ("fast"), holds the answer until
    `release` is set ("hold"), or sends its body one byte every 0.1 s ("drip")."""

    mode: str = "fast"
    requests: int = 0
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def body(self) -> bytes:
        return json.dumps({"keys": [KEY.public_jwk()]}).encode()


def _handler(issuer: SlowIssuer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            issuer.requests += 1
            issuer.arrived.set()
            body = issuer.body()
            if issuer.mode == "hold":
                issuer.release.wait(timeout=30)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                if issuer.mode == "drip":
                    for byte in body:
                        if issuer.release.wait(timeout=0.1):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                else:
                    self.wfile.write(body)
            except OSError:
                pass  # the verifier gave up and closed the connection: what it should do

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def issuer() -> Iterator[SlowIssuer]:
    state = SlowIssuer()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/oauth2/jwks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


def _serve(verifier: Verifier) -> Iterator[str]:
    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def read(request: Request) -> Response:
        return JSONResponse({"sub": request.state.claims["sub"]})

    app = Starlette(routes=[Route("/healthz", healthz), Route("/read", read)])
    app.add_middleware(
        BearerAuthMiddleware,  # type: ignore[arg-type]
        verifier=verifier,
        exempt=("/healthz",),
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def api(issuer: SlowIssuer, request: pytest.FixtureRequest) -> Iterator[str]:
    """The resource server, with a short cooldown so that an unknown kid is fetched for soon
    after the first fill; `param` is the cache's fetch deadline."""
    timeout = getattr(request, "param", 10.0)
    cache = JWKSCache(issuer.url, cooldown=COOLDOWN, timeout=timeout)
    yield from _serve(Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=cache))


def _timed(http: httpx.Client, path: str, **kwargs: Any) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = http.get(path, **kwargs)
    return response, time.monotonic() - start


class Background:
    """A request made from another thread, its response kept for the test."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.response: httpx.Response | None = None
        self.elapsed = 0.0
        self._thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)
        self._thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        start = time.monotonic()
        self.response = httpx.get(url, headers=headers, timeout=30)
        self.elapsed = time.monotonic() - start

    def result(self, timeout: float = 20) -> httpx.Response:
        self._thread.join(timeout)
        assert self.response is not None, "the background request did not finish"
        return self.response


def test_while_an_unknown_kid_waits_on_a_slow_issuer_other_requests_answer_at_once(
    issuer: SlowIssuer, api: str
) -> None:
    with httpx.Client(base_url=api, timeout=5 * PROMPT) as http:
        assert http.get("/read", headers=_bearer()).status_code == 200  # keys fetched, cached
        time.sleep(COOLDOWN)
        issuer.mode, issuer.arrived = "hold", threading.Event()
        waiting = Background(api + "/read", _bearer(UNPUBLISHED))
        assert issuer.arrived.wait(timeout=10), "the unknown kid did not make a fetch"
        try:
            health, health_time = _timed(http, "/healthz")
            known, known_time = _timed(http, "/read", headers=_bearer())
        finally:
            issuer.release.set()
        assert waiting.response is None, "the held fetch was not waited for"
        assert (health.status_code, known.status_code) == (200, 200)
        assert health_time < PROMPT, f"the health check took {health_time:.2f}s"
        assert known_time < PROMPT, f"a known kid took {known_time:.2f}s"
        response = waiting.result()
        assert response.status_code == 401  # fetched: the kid is not published
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert issuer.requests == 2  # the first fill, then one fetch for the unknown kid


@pytest.mark.parametrize("api", [1.0], indirect=True)  # the cache's total fetch deadline: 1 s
def test_an_issuer_that_drips_its_jwks_costs_an_unknown_kid_at_most_the_deadline(
    issuer: SlowIssuer, api: str
) -> None:
    with httpx.Client(base_url=api, timeout=10) as http:
        assert http.get("/read", headers=_bearer()).status_code == 200
        time.sleep(COOLDOWN)
        issuer.mode, issuer.arrived = "drip", threading.Event()
        waiting = Background(api + "/read", _bearer(UNPUBLISHED))
        assert issuer.arrived.wait(timeout=10)
        known, known_time = _timed(http, "/read", headers=_bearer())
        response = waiting.result()
    assert known.status_code == 200
    assert known_time < PROMPT
    assert response.status_code == 503  # cannot be checked now: not a verdict on the token
    assert response.json()["error"] == "temporarily_unavailable"
    assert waiting.elapsed < 3.0, f"the unknown kid waited {waiting.elapsed:.2f}s"
