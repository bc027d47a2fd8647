"""A JWKS fetched over HTTP and cached; refetched when stale or when a token names an unknown
`kid` (at most once per cooldown, so garbage kids cannot make us hammer the issuer).

A failed fetch (network, HTTP status, not a JWK Set) also waits out the cooldown before the
next attempt, so an issuer outage is not hammered either. Meanwhile the last good key set
keeps verifying; without one, `key` raises `VerificationUnavailable`: the token cannot be
checked now, which says nothing about whether it is valid.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

DEFAULT_TTL = 300.0
DEFAULT_COOLDOWN = 10.0

log = logging.getLogger("kubemint.verify")


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
        cooldown: float = DEFAULT_COOLDOWN,
        fetch: Callable[[str], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.cooldown = cooldown
        self._fetch = fetch or _http_fetch
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._failure: str | None = None  # why the last fetch failed; None when it worked
        self._lock = threading.Lock()

    def key(self, kid: str) -> dict[str, Any] | None:
        """The JWK with this kid (None when the issuer does not publish it), refreshing the
        set when needed; `VerificationUnavailable` when the set cannot be fetched and no good
        one is at hand to answer from."""
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at > self.ttl:
            self._try_refresh(now)  # stale: a failure keeps serving the last good set
        key = self._keys.get(kid)
        if key is None and self._may_fetch(now):
            self._try_refresh(now)  # a rotation may have published it since
            key = self._keys.get(kid)
        if key is None and self._failure is not None:
            # Unknown here, and the issuer cannot be asked: maybe a key published since.
            raise VerificationUnavailable(
                "the issuer's signing keys cannot be fetched", self._retry_after(now)
            )
        return key

    def refresh(self) -> None:
        """Fetch the key set now; raises what the fetch raised, or ValueError for a document
        that is not a JWK Set (the cached set is kept either way)."""
        with self._lock:
            self._refresh()

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at > self.cooldown

    def _try_refresh(self, now: float) -> None:
        """Refresh unless another attempt (here or in another thread) was made within the
        cooldown; a failure is logged and remembered, not raised."""
        with self._lock:
            if not self._may_fetch(now):
                return
            try:
                self._refresh()
            except Exception:
                log.warning("fetching the JWKS %s failed: %s", self.url, self._failure)

    def _refresh(self) -> None:
        self._attempted_at = self._clock()
        try:
            document = self._fetch(self.url)
            keys = document.get("keys") if isinstance(document, dict) else None
            if not isinstance(keys, list):
                raise ValueError("the JWKS document has no 'keys' list")
        except Exception as exc:
            self._failure = f"{type(exc).__name__}: {exc}"
            raise
        self._keys = {
            k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)
        }
        self._fetched_at = self._clock()
        self._failure = None

    def _retry_after(self, now: float) -> int:
        attempted = self._attempted_at if self._attempted_at is not None else now
        return max(1, math.ceil(attempted + self.cooldown - now))


def _http_fetch(url: str) -> dict[str, Any]:
    response = httpx.get(url, timeout=10, headers={"Accept": "application/json"})
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document
