"""A JWKS fetched over HTTP and cached; refetched when stale or when a token names an unknown
`kid` (at most once per cooldown, so garbage kids cannot make us hammer the issuer).

How long a set stays fresh is what the issuer says in `Cache-Control: max-age` (less the
`Age` a cache in between has added), held within [cooldown, `max_ttl`]; `no-cache`/`no-store`
mean the cooldown; no word from the issuer means `ttl`. `max_ttl` (5 minutes by default)
bounds how long a withdrawn key keeps verifying here, whatever the max-age (kubemint's is up
to an hour, for verifiers that value availability over a fast withdrawal). The cooldown counts
from the end of the last fetch, never from its start, so a fetch that takes its whole
`timeout` does not use up the cooldown and let the next one follow at once.

Fetching never holds up a request that the cache can answer: a fetch runs in its own thread,
one at a time per cache (single flight: every request that needs it waits on that one fetch),
and only a request whose `kid` is not in the cached set waits for it, and for at most
`timeout` seconds, the fetch's total deadline (a slow or dripping issuer cannot stretch it).
A stale set is refreshed in the background while it keeps answering. `key_async` waits
without blocking the event loop, so a web app's other requests, health checks included, go
on meanwhile; `key` is the same for threads and scripts.

A failed fetch (network, HTTP status, deadline, not a JWK Set) also waits out the cooldown
before the next attempt, so an issuer outage is not hammered either. Meanwhile the last good
key set keeps verifying; without one, a lookup raises `VerificationUnavailable`: the token
cannot be checked now, which says nothing about whether it is valid.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_TTL = 300.0  # when the issuer sends no max-age
# The longest a max-age is believed: a withdrawn key (kubemint.io/withdraw) leaves the issuer's
# JWKS at once, and stops verifying here at the next fetch, within this bound.
DEFAULT_MAX_TTL = 300.0
DEFAULT_COOLDOWN = 10.0
DEFAULT_TIMEOUT = 10.0
MAX_DOCUMENT_BYTES = 1024 * 1024  # a JWK Set is a few KB; more is not one

log = logging.getLogger("kubemint.verify")


@dataclass(frozen=True)
class Fetched:
    """A JWK Set document and the caching headers it came with."""

    document: Any
    cache_control: str | None = None
    age: str | None = None


# A fetch returns the document alone (no caching headers: `ttl` applies) or `Fetched`.
Fetch = Callable[[str], dict[str, Any] | Fetched]


def freshness(
    cache_control: str | None,
    age: str | None,
    *,
    default: float,
    floor: float,
    ceiling: float,
) -> float:
    """Seconds a fetched set stays fresh, from its Cache-Control and Age headers (RFC 9111
    §4.2.1 as a private cache reads them: max-age, not s-maxage)."""
    directives: dict[str, str] = {}
    for part in (cache_control or "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return floor
    try:
        max_age = int(directives["max-age"])
    except (KeyError, ValueError):
        return max(floor, min(ceiling, default))
    try:
        already = max(0, int(age or 0))
    except ValueError:
        already = 0
    return float(max(floor, min(ceiling, max_age - already)))


class VerificationUnavailable(ValueError):
    """The issuer's keys cannot be had right now, so no token can be verified: answer 503
    and retry after `retry_after` seconds. Never a verdict on the token.

    A ValueError, as the fetch errors it replaces were to callers catching those."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class JWKSCache:
    def __init__(
        self,
        url: str,
        *,
        ttl: float = DEFAULT_TTL,
        max_ttl: float = DEFAULT_MAX_TTL,
        cooldown: float = DEFAULT_COOLDOWN,
        timeout: float = DEFAULT_TIMEOUT,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl = ttl
        """How long a set stays fresh when the issuer does not say (no max-age)."""
        self.max_ttl = max_ttl
        self.cooldown = cooldown
        self.timeout = timeout
        """Total deadline of one fetch, and the longest a lookup waits for it (seconds)."""
        self._fetch: Fetch = fetch or (lambda target: _http_fetch(target, timeout))
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._fresh_for = ttl  # how long that fetch's set is fresh (its max-age)
        self._attempted_at: float | None = None  # end of the last fetch, successful or not
        self._failure: str | None = None  # why the last fetch failed; None when it worked
        self._inflight: concurrent.futures.Future[None] | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> dict[str, Any] | None:
        """The JWK with this kid (None when the issuer does not publish it), refreshing the
        set when needed; `VerificationUnavailable` when the set cannot be fetched and no good
        one is at hand to answer from. Blocks the calling thread while it waits for a fetch:
        in a coroutine, use `key_async`."""
        key, fetching = self._lookup(kid)
        if fetching is None:
            return key
        with contextlib.suppress(concurrent.futures.TimeoutError):  # still fetching: below
            fetching.result(timeout=self.timeout)
        return self._after_fetch(kid, fetching)

    async def key_async(self, kid: str) -> dict[str, Any] | None:
        """`key` for asyncio code: the wait for a fetch suspends only this coroutine."""
        key, fetching = self._lookup(kid)
        if fetching is None:
            return key
        # shield: a waiter that gives up must not cancel the fetch others wait on.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fetching)), self.timeout)
        return self._after_fetch(kid, fetching)

    def refresh(self) -> None:
        """Fetch the key set now, in this thread; raises what the fetch raised, or ValueError
        for a document that is not a JWK Set (the cached set is kept either way)."""
        self._fetch_and_store()

    # -- internals ---------------------------------------------------------------------------

    def _lookup(
        self, kid: str
    ) -> tuple[dict[str, Any] | None, concurrent.futures.Future[None] | None]:
        """The key from the cached set, or the fetch to wait for when the set lacks it.

        Starts a fetch when the set is stale (the cached key still answers) or lacks the kid
        (once per cooldown); joins the one in flight rather than starting another."""
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at > self._fresh_for:
                self._start(now)  # stale: refreshed in the background
            key = self._keys.get(kid)
            if key is not None:
                return key, None
            if self._inflight is None and self._may_fetch(now):
                self._start(now)  # a rotation may have published it since
            if self._inflight is not None:
                return None, self._inflight
            self._raise_if_failed(now)
            return None, None

    def _after_fetch(
        self, kid: str, fetching: concurrent.futures.Future[None]
    ) -> dict[str, Any] | None:
        key = self._keys.get(kid)
        if key is None and (not fetching.done() or self._failure is not None):
            # Unknown here, and the issuer cannot be asked (in time): maybe a key published
            # since, so neither a yes nor a no.
            raise VerificationUnavailable(
                "the issuer's signing keys cannot be fetched", self._retry_after(self._clock())
            )
        return key

    def _raise_if_failed(self, now: float) -> None:
        if self._failure is not None:
            raise VerificationUnavailable(
                "the issuer's signing keys cannot be fetched", self._retry_after(now)
            )

    @property
    def fresh_for(self) -> float:
        """How long the cached set is fresh: its max-age as bounded here, or `ttl`."""
        return self._fresh_for

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at > self.cooldown

    def _start(self, now: float) -> None:
        """Start a fetch in its own thread unless one is in flight or the cooldown holds.
        Called with the lock held."""
        if self._inflight is not None or not self._may_fetch(now):
            return
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._inflight = future
        # A daemon thread, not a pool: a fetch stuck past its deadline must not hold up the
        # process's exit, and at most one runs per cache.
        threading.Thread(
            target=self._run, args=(future,), name="kubemint-jwks-fetch", daemon=True
        ).start()

    def _run(self, future: concurrent.futures.Future[None]) -> None:
        try:
            self._fetch_and_store()
        except Exception:
            log.warning("fetching the JWKS %s failed: %s", self.url, self._failure)
        finally:
            with self._lock:
                self._inflight = None
            future.set_result(None)

    def _fetch_and_store(self) -> None:
        try:
            fetched = self._fetch(self.url)
            if not isinstance(fetched, Fetched):
                fetched = Fetched(fetched)
            document = fetched.document
            keys = document.get("keys") if isinstance(document, dict) else None
            if not isinstance(keys, list):
                raise ValueError("the JWKS document has no 'keys' list")
        except Exception as exc:
            with self._lock:
                self._failure = f"{type(exc).__name__}: {exc}"
                self._attempted_at = self._clock()  # the cooldown starts when it ended
            raise
        fresh_for = freshness(
            fetched.cache_control,
            fetched.age,
            default=self.ttl,
            floor=self.cooldown,
            ceiling=self.max_ttl,
        )
        with self._lock:
            self._keys = {
                k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)
            }
            self._fetched_at = self._attempted_at = self._clock()
            self._fresh_for = fresh_for
            self._failure = None

    def _retry_after(self, now: float) -> int:
        attempted = self._attempted_at if self._attempted_at is not None else now
        return max(1, math.ceil(attempted + self.cooldown - now))


def _http_fetch(url: str, timeout: float) -> Fetched:
    """GET the JWKS within `timeout` seconds in all (httpx's timeouts are per operation, so
    an issuer that drips bytes would otherwise never time out); no redirects."""
    deadline = time.monotonic() + timeout
    body = bytearray()
    with httpx.stream(
        "GET", url, timeout=timeout, headers={"Accept": "application/json"}
    ) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise ValueError(f"the JWKS document is larger than {MAX_DOCUMENT_BYTES} bytes")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the JWKS was not fetched within {timeout:g}s")
    return Fetched(
        json.loads(body), response.headers.get("cache-control"), response.headers.get("age")
    )
