"""TokenSource and AsyncTokenSource: a renewal failure never takes away a still-valid token,
renewals are retried with backoff meanwhile, and no caller with a valid token waits for the
token endpoint (for asyncio: the loop never blocks on a renewal).

The token endpoint here is an httpx transport driven by the test (up, down, or held), on a
hand-driven clock; the real server stopped and started is in tests/integration/
test_workload_outage.py."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest

from kubemint.client import AsyncTokenSource, Credentials, KubemintAuth, TokenError, TokenSource
from kubemint.client.tokens import Action, Token, parse_response, plan

URL = "http://kubemint.test/oauth2/token"


class Endpoint:
    """A token endpoint: hands out t1, t2, … (100 s each) while up; counts requests."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.requests = 0
        self.down = False
        self.issued = 0
        self.release = threading.Event()
        self.release.set()

    def clock(self) -> float:
        return self.now

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        self.issued += 1
        return httpx.Response(200, json={"access_token": f"t{self.issued}", "expires_in": 100})

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert self.release.wait(10)
        return self.answer(request)


@pytest.fixture
def credentials(tmp_path: Path) -> Credentials:
    secret = tmp_path / "client-secret"
    secret.write_text("s3cret")
    return Credentials(token_url=URL, client_id="ns.app", secret_file=secret)


@pytest.fixture
def endpoint() -> Endpoint:
    return Endpoint()


def _sync(endpoint: Endpoint, credentials: Credentials) -> TokenSource:
    http = httpx.Client(transport=httpx.MockTransport(endpoint.handler))
    return TokenSource(credentials, http=http, clock=endpoint.clock, retry_cap=5)


def test_the_plan_uses_renews_or_fetches() -> None:
    token = Token("t", expires_at=100, refresh_at=80)
    assert plan(10, None, 0, False) is Action.FETCH
    assert plan(10, token, 0, False) is Action.USE
    assert plan(85, token, 0, False) is Action.RENEW
    assert plan(85, token, 0, True) is Action.USE  # one renewal at a time
    assert plan(85, token, 90, False) is Action.USE  # backing off after a failure
    assert plan(100, token, 0, True) is Action.FETCH  # expired: nothing to fall back on


def test_the_response_sets_expiry_and_renewal_from_the_request_start() -> None:
    token = parse_response(200, {"access_token": "a", "expires_in": 100}, 50, min_margin=10)
    assert (token.expires_at, token.refresh_at) == (150, 130)  # renewed at 80%
    short = parse_response(200, {"access_token": "a", "expires_in": 30}, 0, min_margin=10)
    assert short.refresh_at == 20  # at least min_margin before expiry
    chosen = parse_response(
        200, {"access_token": "a", "expires_in": 30}, 0, min_margin=10, renew_before=20
    )
    assert chosen.refresh_at == 10
    for status, body in [(200, ["a"]), (200, {"expires_in": 5}), (503, {"error": "x"})]:
        with pytest.raises(TokenError):
            parse_response(status, body, 0, min_margin=10)
    with pytest.raises(TokenError, match="expires_in"):
        parse_response(200, {"access_token": "a", "expires_in": "soon"}, 0, min_margin=10)


def test_a_failed_renewal_keeps_the_valid_token_and_retries_with_backoff(
    endpoint: Endpoint, credentials: Credentials
) -> None:
    source = _sync(endpoint, credentials)
    assert source.token() == "t1"
    endpoint.down = True
    endpoint.now += 81  # renewal due; the token is valid 19 s more
    assert source.token() == "t1"  # at once, the renewal runs in the background
    source.wait_renewal(5)
    assert source.failures == 1
    assert endpoint.requests == 3
    for _ in range(20):  # callers meanwhile: no request while backing off
        assert source.token() == "t1"
    assert endpoint.requests == 3
    endpoint.now += 1.01  # past the first backoff (≤ 1 s)
    assert source.token() == "t1"
    source.wait_renewal(5)
    assert source.failures == 2
    endpoint.down = False  # the server is back: the next retry (≤ 2 s later) renews
    endpoint.now += 2.01
    assert source.token() == "t1"
    source.wait_renewal(5)
    assert source.token() == "t2"
    assert source.failures == 0
    assert source.last_error is None


def test_without_a_valid_token_the_caller_sees_the_error(
    endpoint: Endpoint, credentials: Credentials
) -> None:
    source = _sync(endpoint, credentials)
    assert source.token() == "t1"
    endpoint.down = True
    endpoint.now += 100  # expired
    with pytest.raises(httpx.ConnectError):
        source.token()
    with pytest.raises(httpx.ConnectError):
        source.token(force=True)


def test_a_caller_with_a_valid_token_never_waits_for_a_held_renewal(
    endpoint: Endpoint, credentials: Credentials
) -> None:
    source = _sync(endpoint, credentials)
    assert source.token() == "t1"
    endpoint.release.clear()  # the endpoint hangs (a blackholed network)
    endpoint.now += 81
    started = time.monotonic()
    assert [source.token() for _ in range(50)] == ["t1"] * 50
    assert time.monotonic() - started < 1
    endpoint.release.set()
    source.wait_renewal(5)
    assert source.token() == "t2"


async def test_the_async_source_keeps_the_token_and_never_blocks_the_loop(
    endpoint: Endpoint, credentials: Credentials
) -> None:
    held = asyncio.Event()
    held.set()

    async def handler(request: httpx.Request) -> httpx.Response:
        await held.wait()
        return endpoint.answer(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with AsyncTokenSource(credentials, http=http, clock=endpoint.clock) as source:
        assert await source.token() == "t1"
        held.clear()  # the next renewal hangs
        endpoint.now += 81
        assert await asyncio.wait_for(source.token(), 0.5) == "t1"
        ticks = 0
        for _ in range(10):  # the loop runs on while the renewal waits
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 10
        endpoint.down = True
        held.set()
        await source.wait_renewal()
        assert source.failures == 1
        assert await source.token() == "t1"  # still valid: kept
        endpoint.down = False
        endpoint.now += 1.01
        assert await source.token() == "t1"
        await source.wait_renewal()
        assert await source.token() == "t2"
        endpoint.now += 100
        endpoint.down = True
        with pytest.raises(httpx.ConnectError):
            await source.token()


async def test_kubemint_auth_in_an_async_client_does_not_wait_for_a_renewal(
    endpoint: Endpoint, credentials: Credentials
) -> None:
    held = asyncio.Event()
    held.set()

    async def token_endpoint(request: httpx.Request) -> httpx.Response:
        await held.wait()
        return endpoint.answer(request)

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"auth": request.headers["authorization"]})

    source = AsyncTokenSource(
        credentials,
        http=httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint)),
        clock=endpoint.clock,
    )
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(api), auth=KubemintAuth(source), base_url="http://api"
    ) as client:
        assert (await client.get("/")).json()["auth"] == "Bearer t1"
        held.clear()
        endpoint.now += 81
        answers = await asyncio.wait_for(asyncio.gather(*(client.get("/") for _ in range(5))), 1)
        assert {r.json()["auth"] for r in answers} == {"Bearer t1"}
        held.set()
        await source.wait_renewal()
        assert (await client.get("/")).json()["auth"] == "Bearer t2"
    await source.aclose()


async def test_a_sync_source_in_an_async_client_waits_in_a_thread(
    endpoint: Endpoint, credentials: Credentials
) -> None:
    endpoint.release.clear()  # the first token request hangs until released
    source = _sync(endpoint, credentials)

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"auth": request.headers["authorization"]})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(api), auth=KubemintAuth(source), base_url="http://api"
    ) as client:
        pending = asyncio.ensure_future(client.get("/"))
        await asyncio.sleep(0.05)
        assert not pending.done()  # waiting for its token, in a worker thread…
        endpoint.release.set()  # …while this coroutine ran: the loop was not blocked
        assert (await asyncio.wait_for(pending, 5)).json()["auth"] == "Bearer t1"
    source.close()


def test_an_async_source_in_a_sync_client_is_a_clear_error(credentials: Credentials) -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    source = AsyncTokenSource(credentials)
    with (
        httpx.Client(transport=httpx.MockTransport(api), auth=KubemintAuth(source)) as client,
        pytest.raises(TypeError, match="AsyncClient"),
    ):
        client.get("http://api/")


@pytest.mark.parametrize(
    ("failure", "requests"),
    [
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), 2),
        (httpx.ReadTimeout("timed out"), 1),  # a repeat would double the wait
    ],
    ids=["a dropped connection is asked once more", "a timeout is not repeated"],
)
async def test_both_sources_repeat_a_dropped_request_once_and_a_timeout_never(
    credentials: Credentials, failure: httpx.TransportError, requests: int
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content.decode())
        if len(seen) == 1:
            raise failure
        return httpx.Response(200, json={"access_token": "t", "expires_in": 100})

    transport = httpx.MockTransport(handler)
    sync = TokenSource(credentials, http=httpx.Client(transport=transport))
    if requests == 2:
        assert sync.token() == "t"
    else:
        with pytest.raises(type(failure)):
            sync.token()
        assert sync.failures == 1
    assert len(seen) == requests
    seen.clear()
    source = AsyncTokenSource(credentials, http=httpx.AsyncClient(transport=transport))
    if requests == 2:
        assert await source.token() == "t"
    else:
        with pytest.raises(type(failure)):
            await source.token()
        assert source.failures == 1
    assert len(seen) == requests
