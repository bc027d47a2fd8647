"""Failed client authentication: limited per source address, throttled per client id.

Who may call how often after failing, for every endpoint that authenticates clients (token,
introspection, revocation):

- **Per source address** (`failures_per_source`, 100 a minute): once a source has failed that
  often, every request from it is refused with 429 and Retry-After before any credential is
  looked at. This is what bounds the cost of a guessing or misconfigured caller. The source
  is the peer address, or the client address trusted proxies recorded (`server/sources.py`).
- **Per client id** (`failures_per_client`, 10 a minute): only failed attempts are throttled.
  The credential is always checked first, and a correct one always passes, however many
  failures others charged to that id; a failed attempt beyond the limit gets 429 instead of
  401. A limit checked before the credential would let anyone who can guess a client id
  (they are `<namespace>.<name>`) lock the client out with a few requests a minute.

Not locking a client id out costs no protection: every credential the server checks is a
256-bit random secret (compared by SHA-256 digest in constant time, microseconds) or a signed
JWT, so one online guess succeeds with probability 2^-256 and no guessing rate matters.
Claimed ids are counted whether a client has them or not, so the 429 tells nobody which ids
exist; they are keyed by digest, so a long claimed id costs no memory. Memory stays bounded:
windows that have passed are dropped, and each table has a size cap.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from kubemint.oauth.client_auth import TokenRequest, claimed_client_id
from kubemint.oauth.errors import InvalidClient, TooManyRequests

T = TypeVar("T")
TOO_MANY = "too many failed attempts"


@dataclass
class _Window:
    started: float
    failures: int = 0


@dataclass
class FailureLimiter:
    """Failures per key in fixed windows. Thread-safe: requests that wait for the condition
    sandbox authenticate in threads (kubemint.server.app)."""

    max_failures: int = 10
    window: float = 60.0
    max_keys: int = 100_000
    clock: Callable[[], float] = time.monotonic
    _table: OrderedDict[str, _Window] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def retry_after(self, *keys: str) -> int | None:
        """Seconds to wait when any key is over its limit, else None."""
        with self._lock:
            return self._retry_after(keys)

    def _retry_after(self, keys: tuple[str, ...]) -> int | None:
        now = self.clock()
        waits = []
        for key in keys:
            entry = self._table.get(key)
            if entry is None:
                continue
            if now - entry.started >= self.window:
                del self._table[key]
            elif entry.failures >= self.max_failures:
                waits.append(int(entry.started + self.window - now) + 1)
        return max(waits) if waits else None

    def failed(self, *keys: str) -> None:
        with self._lock:
            self._failed(keys)

    def _failed(self, keys: tuple[str, ...]) -> None:
        now = self.clock()
        for key in keys:
            entry = self._table.get(key)
            if entry is None or now - entry.started >= self.window:
                entry = self._table[key] = _Window(now)
            entry.failures += 1
            self._table.move_to_end(key)
        while len(self._table) > self.max_keys:
            self._table.popitem(last=False)


@dataclass
class AuthLimits:
    """The failed-authentication policy (module docstring), shared by all endpoints."""

    per_client: FailureLimiter = field(default_factory=FailureLimiter)
    per_source: FailureLimiter = field(default_factory=lambda: FailureLimiter(max_failures=100))

    @classmethod
    def of(cls, failures_per_client: int, failures_per_source: int) -> AuthLimits:
        return cls(FailureLimiter(failures_per_client), FailureLimiter(failures_per_source))

    def guard(self, request: TokenRequest, authenticate: Callable[[], T]) -> T:
        """`authenticate()` under the limits: TooManyRequests for a source over its limit
        (without calling it) and for a failed attempt on a client id over its limit."""
        wait = self.per_source.retry_after(request.source)
        if wait:
            raise TooManyRequests(TOO_MANY, retry_after=wait, reason="source over its limit")
        try:
            return authenticate()
        except InvalidClient as error:
            key = client_key(claimed_client_id(request))
            wait = self.per_client.retry_after(key)
            self.per_client.failed(key)
            self.per_source.failed(request.source)
            if wait:
                reason = f"{error.reason}; client id over its failure limit"
                raise TooManyRequests(TOO_MANY, retry_after=wait, reason=reason) from None
            raise


def client_key(claimed: str) -> str:
    """The per-client table's key for a claimed id: fixed size whatever was sent."""
    return hashlib.sha256(claimed.encode("utf-8", "surrogatepass")).hexdigest()
