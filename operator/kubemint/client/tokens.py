"""A cached access token that renews itself before it expires, and an httpx Auth using it.

A token is renewed when 80% of its life is gone (at least `min_margin` seconds before expiry,
or `renew_before` seconds when given). Renewal never takes away a token that still works:
while the cached token is valid, a renewal runs in the background (a thread for
`TokenSource`, a task for `AsyncTokenSource`) and callers keep getting the cached token at
once; a renewal that fails is retried with backoff and jitter (1, 2, 4 … up to `retry_cap`
seconds) until one succeeds or the token expires. Only a caller without any valid token waits
for the token endpoint, and sees its error.

Both sources share one implementation of these decisions (`plan`, `parse_response`, the
backoff, the one repeat of a dropped request): the token request is an `Exchange` generator
that does no I/O of its own, as in h11 or httpx's auth flows, driven by each source with its
own client, lock and background (thread or task).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from kubemint.client.credentials import Credentials
from kubemint.client.retry import TokenError, backoff, describe

__all__ = ["AsyncTokenSource", "KubemintAuth", "Token", "TokenError", "TokenSource"]

log = logging.getLogger("kubemint.client")

DEFAULT_RETRY_CAP = 5.0

HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
LockT = TypeVar("LockT", threading.Lock, asyncio.Lock)


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float
    refresh_at: float


class Action(enum.Enum):
    USE = "use"  # the cached token, nothing else to do
    RENEW = "renew"  # the cached token, and renew it in the background
    FETCH = "fetch"  # no valid token: the caller must wait for one


def plan(now: float, token: Token | None, retry_at: float, renewing: bool) -> Action:
    """What a token request does at `now`: `retry_at` is when a failed renewal may be tried
    again, `renewing` whether one is running."""
    if token is None or now >= token.expires_at:
        return Action.FETCH
    if now < token.refresh_at or renewing or now < retry_at:
        return Action.USE
    return Action.RENEW


def parse_response(
    status: int,
    body: Any,
    started: float,
    *,
    min_margin: float,
    renew_before: float | None = None,
) -> Token:
    """The token from a token endpoint's answer, its expiry and renewal time counted from
    `started` (before the request left, so never later than the server's)."""
    if not isinstance(body, dict):
        raise TokenError("invalid_response", f"HTTP {status}: not a JSON object", status)
    if status != 200 or not isinstance(body.get("access_token"), str):
        raise TokenError(
            str(body.get("error", "invalid_response")),
            str(body.get("error_description", "")),
            status,
        )
    try:
        lifetime = float(body.get("expires_in", 300))
    except (TypeError, ValueError):
        raise TokenError("invalid_response", "expires_in is not a number", status) from None
    margin = renew_before if renew_before is not None else max(min_margin, lifetime * 0.2)
    return Token(body["access_token"], started + lifetime, started + max(0.0, lifetime - margin))


class _Renewals:
    """The state both sources share: the cached token and the failed renewals since it."""

    def __init__(self, clock: Callable[[], float], retry_cap: float) -> None:
        self.clock = clock
        self.retry_cap = retry_cap
        self.token: Token | None = None
        self.failures = 0  # failed renewals in a row
        self.retry_at = 0.0
        self.last_error: BaseException | None = None

    def succeeded(self, token: Token) -> None:
        if self.failures:
            log.info("token renewed after %d failed attempts", self.failures)
        self.token, self.failures, self.retry_at, self.last_error = token, 0, 0.0, None

    def failed(self, exc: BaseException) -> float:
        self.failures += 1
        self.last_error = exc
        delay = backoff(self.failures, self.retry_cap)
        self.retry_at = self.clock() + delay
        return delay

    def still_valid(self) -> bool:
        return self.token is not None and self.clock() < self.token.expires_at


@dataclass(frozen=True)
class _Post:
    """One request the exchange wants sent: the form and the auth to post to the token URL."""

    form: dict[str, str]
    auth: httpx.Auth | Any


# One token request without I/O (sans-IO, like httpx's auth flows): the generator yields the
# request to send, is sent the response (or thrown the transport error), records the outcome
# and returns the token; each source drives it with its own client.
Exchange = Generator[_Post, httpx.Response, Token]


def _finish(exchange: Exchange, response: httpx.Response) -> Token:
    """Hand the exchange the response to its last request: the token (or its error)."""
    try:
        exchange.send(response)
    except StopIteration as done:
        token: Token = done.value
        return token
    raise RuntimeError("the token exchange asked for a third request")  # pragma: no cover


class _Source(Generic[HttpT, LockT]):
    """What both sources share: their settings, the cached token and its renewals, the
    decisions (`plan`, backoff, the one repeat of a dropped request) and the token request as
    an `Exchange`. A subclass brings only its I/O: the client, the lock held while fetching,
    how a background renewal runs, and the loop that drives the exchange."""

    _renewing: threading.Thread | asyncio.Task[None] | None

    def __init__(
        self,
        credentials: Credentials,
        *,
        scope: str | None = None,
        audience: str | None = None,
        http: HttpT | None = None,
        min_margin: float = 10.0,
        renew_before: float | None = None,
        retry_cap: float = DEFAULT_RETRY_CAP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.scope = scope
        self.audience = audience
        self.min_margin = min_margin
        self.renew_before = renew_before
        self.clock = clock
        self._state = _Renewals(clock, retry_cap)
        self._owns_http = http is None
        self.http: HttpT = http or self._new_http()
        self._lock = threading.Lock()  # guards the state (a TokenSource renews in a thread)
        self._fetching: LockT = self._new_fetching_lock()  # one token request at a time
        self._renewing = None

    def _new_http(self) -> HttpT:
        raise NotImplementedError

    def _new_fetching_lock(self) -> LockT:
        raise NotImplementedError

    def _start_renewal(self) -> threading.Thread | asyncio.Task[None]:
        raise NotImplementedError

    @property
    def refresh_at(self) -> float:
        token = self._state.token
        return token.refresh_at if token else self.clock()

    @property
    def expires_at(self) -> float | None:
        token = self._state.token
        return token.expires_at if token else None

    @property
    def failures(self) -> int:
        """Failed renewals since the last token came."""
        return self._state.failures

    @property
    def last_error(self) -> BaseException | None:
        return self._state.last_error

    def cached(self) -> str | None:
        """The cached token if it is valid (starting a background renewal when one is due),
        else None; never waits for the network."""
        with self._lock:
            state = self._state
            action = plan(self.clock(), state.token, state.retry_at, self._renewing is not None)
            if action is Action.FETCH:
                return None
            if action is Action.RENEW:
                self._renewing = self._start_renewal()
            return state.token.value  # type: ignore[union-attr]

    def _valid(self) -> str | None:
        """The cached token if it is valid, due for renewal or not: asked again by a caller
        that waited for the fetching lock (another caller may have fetched meanwhile)."""
        with self._lock:
            token = self._state.token
            if token is None or plan(self.clock(), token, 0.0, True) is not Action.USE:
                return None
            return token.value

    def _exchange(self) -> Exchange:
        """One token request; any failure is recorded (and scheduled for a retry) and raised."""
        started = self.clock()  # before the request leaves: never later than the server's
        try:
            try:
                response = yield self._request()
            except (httpx.NetworkError, httpx.RemoteProtocolError):
                # A token request is safe to repeat, and the usual cause is a kept-alive
                # connection that a token-server pod closed as it shut down (a rolling
                # upgrade): once more, on a new connection, with a fresh assertion (a jti is
                # single-use). Timeouts are not repeated: they would double the wait.
                response = yield self._request()
            token = self._parse(response, started)
        except Exception as exc:
            with self._lock:
                self._state.failed(exc)
            raise
        with self._lock:
            self._state.succeeded(token)
        return token

    @contextlib.contextmanager
    def _in_background(self) -> Iterator[None]:
        """Around a background renewal: its failure is logged (the exchange scheduled a retry;
        the cached token keeps answering), and the next renewal may start after it."""
        try:
            yield
        except Exception as exc:
            self._log_failure(exc)
        finally:
            with self._lock:
                self._renewing = None

    def _request(self) -> _Post:
        fields, basic = self.credentials.authentication()
        form = {"grant_type": "client_credentials", **fields}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        return _Post(form, httpx.BasicAuth(*basic) if basic else httpx.USE_CLIENT_DEFAULT)

    def _parse(self, response: httpx.Response, started: float) -> Token:
        try:
            body = response.json()
        except ValueError:
            body = None
        return parse_response(
            response.status_code,
            body,
            started,
            min_margin=self.min_margin,
            renew_before=self.renew_before,
        )

    def _log_failure(self, exc: BaseException) -> None:
        """One line for a background renewal that failed (its caller has a valid token)."""
        state = self._state
        left = ""
        if state.token is not None and state.still_valid():
            left = f"; the current token is valid {state.token.expires_at - self.clock():.0f}s more"
        delay = max(0.0, state.retry_at - self.clock())
        log.warning(
            "token renewal failed: %s; retrying in %ss%s", describe(exc), f"{delay:.1f}", left
        )


class TokenSource(_Source[httpx.Client, threading.Lock]):
    """client_credentials tokens from `credentials`, cached and renewed before they expire;
    a renewal failure never takes away a token that is still valid. Background renewals run
    in a thread."""

    _renewing: threading.Thread | None

    def _new_http(self) -> httpx.Client:
        return httpx.Client(timeout=10)

    def _new_fetching_lock(self) -> threading.Lock:
        return threading.Lock()

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> TokenSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def token(self, force: bool = False) -> str:
        """A valid token: the cached one (renewed in the background when due), or a new one
        when there is none (or `force`), waiting for the token endpoint and raising its error."""
        cached = None if force else self.cached()
        if cached is not None:
            return cached
        with self._fetching:
            valid = None if force else self._valid()
            return valid if valid is not None else self._renew().value

    def wait_renewal(self, timeout: float | None = None) -> None:
        """Wait for a background renewal in progress (for tests and orderly shutdowns)."""
        renewing = self._renewing
        if renewing is not None:
            renewing.join(timeout)

    def _start_renewal(self) -> threading.Thread:
        thread = threading.Thread(
            target=self._renew_quietly, name="kubemint-token-renewal", daemon=True
        )
        thread.start()
        return thread

    def _renew_quietly(self) -> None:
        with self._in_background(), self._fetching:
            self._renew()

    def _renew(self) -> Token:
        """Drive one exchange (called with `_fetching` held)."""
        exchange = self._exchange()
        post = next(exchange)
        while True:
            try:
                response = self.http.post(
                    self.credentials.token_url, data=post.form, auth=post.auth
                )
            except Exception as exc:
                post = exchange.throw(exc)
            else:
                return _finish(exchange, response)


class AsyncTokenSource(_Source[httpx.AsyncClient, asyncio.Lock]):
    """`TokenSource` for asyncio: `await source.token()`. Renewals run as tasks on the loop,
    so a request with a valid cached token never waits for the token endpoint."""

    _renewing: asyncio.Task[None] | None

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=10)

    def _new_fetching_lock(self) -> asyncio.Lock:
        return asyncio.Lock()  # binds to the loop that first waits on it

    async def aclose(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> AsyncTokenSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def token(self, force: bool = False) -> str:
        cached = None if force else self.cached()
        if cached is not None:
            return cached
        async with self._fetching:
            valid = None if force else self._valid()
            return valid if valid is not None else (await self._renew()).value

    async def wait_renewal(self) -> None:
        if self._renewing is not None:
            await asyncio.shield(self._renewing)

    def _start_renewal(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._renew_quietly())

    async def _renew_quietly(self) -> None:
        with self._in_background():
            async with self._fetching:
                await self._renew()

    async def _renew(self) -> Token:
        """Drive one exchange (called with `_fetching` held)."""
        exchange = self._exchange()
        post = next(exchange)
        while True:
            try:
                response = await self.http.post(
                    self.credentials.token_url, data=post.form, auth=post.auth
                )
            except Exception as exc:
                post = exchange.throw(exc)
            else:
                return _finish(exchange, response)


class KubemintAuth(httpx.Auth):
    """Bearer tokens for `httpx.Client(auth=KubemintAuth(source))` or
    `httpx.AsyncClient(auth=KubemintAuth(source))`, renewed once on a 401.

    In an AsyncClient, an `AsyncTokenSource` is awaited; a `TokenSource` answers from its
    cache (renewing in its own thread) and, when it has no valid token, is waited for in a
    worker thread: the event loop never blocks on a renewal."""

    def __init__(self, source: TokenSource | AsyncTokenSource) -> None:
        self.source = source

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        if not isinstance(self.source, TokenSource):
            raise TypeError("an AsyncTokenSource needs an httpx.AsyncClient")
        request.headers["Authorization"] = f"Bearer {self.source.token()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.source.token(force=True)}"
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self._token(False)}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {await self._token(True)}"
            yield request

    async def _token(self, force: bool) -> str:
        source = self.source
        if isinstance(source, AsyncTokenSource):
            return await source.token(force)
        cached = None if force else source.cached()
        return cached if cached is not None else await asyncio.to_thread(source.token, force)
