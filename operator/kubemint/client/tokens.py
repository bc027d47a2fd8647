"""A cached access token that renews itself before it expires, and an httpx Auth using it.

A token is renewed when 80% of its life is gone (at least `min_margin` seconds before expiry,
or `renew_before` seconds when given). Renewal never takes away a token that still works:
while the cached token is valid, a renewal runs in the background (a thread for
`TokenSource`, a task for `AsyncTokenSource`) and callers keep getting the cached token at
once; a renewal that fails is retried with backoff and jitter (1, 2, 4 … up to `retry_cap`
seconds) until one succeeds or the token expires. Only a caller without any valid token waits
for the token endpoint, and sees its error.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx

from kubemint.client.credentials import Credentials
from kubemint.client.retry import TokenError, backoff, describe

__all__ = ["AsyncTokenSource", "KubemintAuth", "Token", "TokenError", "TokenSource"]

log = logging.getLogger("kubemint.client")

DEFAULT_RETRY_CAP = 5.0


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


class _Base:
    def __init__(
        self,
        credentials: Credentials,
        *,
        scope: str | None,
        audience: str | None,
        min_margin: float,
        renew_before: float | None,
        retry_cap: float,
        clock: Callable[[], float],
    ) -> None:
        self.credentials = credentials
        self.scope = scope
        self.audience = audience
        self.min_margin = min_margin
        self.renew_before = renew_before
        self.clock = clock
        self._state = _Renewals(clock, retry_cap)

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

    def _request(self) -> tuple[dict[str, str], httpx.Auth | Any]:
        fields, basic = self.credentials.authentication()
        form = {"grant_type": "client_credentials", **fields}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        return form, httpx.BasicAuth(*basic) if basic else httpx.USE_CLIENT_DEFAULT

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


class TokenSource(_Base):
    """client_credentials tokens from `credentials`, cached and renewed before they expire;
    a renewal failure never takes away a token that is still valid."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        scope: str | None = None,
        audience: str | None = None,
        http: httpx.Client | None = None,
        min_margin: float = 10.0,
        renew_before: float | None = None,
        retry_cap: float = DEFAULT_RETRY_CAP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            credentials,
            scope=scope,
            audience=audience,
            min_margin=min_margin,
            renew_before=renew_before,
            retry_cap=retry_cap,
            clock=clock,
        )
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=10)
        self._lock = threading.Lock()  # guards the state
        self._fetching = threading.Lock()  # one request to the token endpoint at a time
        self._renewing: threading.Thread | None = None

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
        if not force:
            cached = self.cached()
            if cached is not None:
                return cached
        with self._fetching:
            if not force:  # another caller may have fetched while this one waited
                with self._lock:
                    if plan(self.clock(), self._state.token, 0.0, True) is Action.USE:
                        return self._state.token.value  # type: ignore[union-attr]
            return self._renew().value

    def cached(self) -> str | None:
        """The cached token if it is valid (starting a background renewal when one is due),
        else None; never waits for the network."""
        with self._lock:
            state = self._state
            action = plan(self.clock(), state.token, state.retry_at, self._renewing is not None)
            if action is Action.FETCH:
                return None
            if action is Action.RENEW:
                self._renewing = threading.Thread(
                    target=self._renew_quietly, name="kubemint-token-renewal", daemon=True
                )
                self._renewing.start()
            return state.token.value  # type: ignore[union-attr]

    def wait_renewal(self, timeout: float | None = None) -> None:
        """Wait for a background renewal in progress (for tests and orderly shutdowns)."""
        renewing = self._renewing
        if renewing is not None:
            renewing.join(timeout)

    def _renew_quietly(self) -> None:
        try:
            with self._fetching:
                self._renew()
        except Exception as exc:  # scheduled by _renew; the cached token keeps answering
            self._log_failure(exc)
        finally:
            with self._lock:
                self._renewing = None

    def _renew(self) -> Token:
        """One request to the token endpoint (called with `_fetching` held)."""
        started = self.clock()
        try:
            token = self._parse(self._post(), started)
        except Exception as exc:  # any failure is scheduled for a retry
            with self._lock:
                self._state.failed(exc)
            raise
        with self._lock:
            self._state.succeeded(token)
        return token

    def _post(self) -> httpx.Response:
        form, auth = self._request()
        try:
            return self.http.post(self.credentials.token_url, data=form, auth=auth)
        except (httpx.NetworkError, httpx.RemoteProtocolError):
            # A token request is safe to repeat, and the usual cause is a kept-alive
            # connection that a token-server pod closed as it shut down (a rolling upgrade):
            # once more, on a new connection, with a fresh assertion (a jti is single-use).
            # Timeouts are not repeated: they would double the wait.
            form, auth = self._request()
            return self.http.post(self.credentials.token_url, data=form, auth=auth)


class AsyncTokenSource(_Base):
    """`TokenSource` for asyncio: `await source.token()`. Renewals run as tasks on the loop,
    so a request with a valid cached token never waits for the token endpoint."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        scope: str | None = None,
        audience: str | None = None,
        http: httpx.AsyncClient | None = None,
        min_margin: float = 10.0,
        renew_before: float | None = None,
        retry_cap: float = DEFAULT_RETRY_CAP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            credentials,
            scope=scope,
            audience=audience,
            min_margin=min_margin,
            renew_before=renew_before,
            retry_cap=retry_cap,
            clock=clock,
        )
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(timeout=10)
        self._fetching: asyncio.Lock | None = None  # made on the loop that first needs it
        self._renewing: asyncio.Task[None] | None = None

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
        if not force:
            cached = self.cached()
            if cached is not None:
                return cached
        async with self._lock():
            if not force and plan(self.clock(), self._state.token, 0.0, True) is Action.USE:
                return self._state.token.value  # type: ignore[union-attr]
            return (await self._renew()).value

    def cached(self) -> str | None:
        """The cached token if valid (scheduling a renewal task when one is due), else None."""
        state = self._state
        action = plan(self.clock(), state.token, state.retry_at, self._renewing is not None)
        if action is Action.FETCH:
            return None
        if action is Action.RENEW:
            self._renewing = asyncio.get_running_loop().create_task(self._renew_quietly())
        return state.token.value  # type: ignore[union-attr]

    async def wait_renewal(self) -> None:
        if self._renewing is not None:
            await asyncio.shield(self._renewing)

    def _lock(self) -> asyncio.Lock:
        if self._fetching is None:
            self._fetching = asyncio.Lock()
        return self._fetching

    async def _renew_quietly(self) -> None:
        try:
            async with self._lock():
                await self._renew()
        except Exception as exc:  # scheduled by _renew; the cached token keeps answering
            self._log_failure(exc)
        finally:
            self._renewing = None

    async def _renew(self) -> Token:
        started = self.clock()
        try:
            token = self._parse(await self._post(), started)
        except Exception as exc:  # any failure is scheduled for a retry
            self._state.failed(exc)
            raise
        self._state.succeeded(token)
        return token

    async def _post(self) -> httpx.Response:
        form, auth = self._request()
        try:
            return await self.http.post(self.credentials.token_url, data=form, auth=auth)
        except (httpx.NetworkError, httpx.RemoteProtocolError):  # see TokenSource._post
            form, auth = self._request()
            return await self.http.post(self.credentials.token_url, data=form, auth=auth)


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
