"""Failed client authentication, limited per client id and per source address.

A fixed number of failures per window is allowed per key; beyond it, requests for that key
are refused with 429 and Retry-After before any credential is checked, so guessing is slow
and cheap to refuse. Successful requests are never counted. Memory stays bounded: keys whose
window has passed are dropped, and the table has a size cap.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Window:
    started: float
    failures: int = 0


@dataclass
class FailureLimiter:
    max_failures: int = 10
    window: float = 60.0
    max_keys: int = 100_000
    clock: Callable[[], float] = time.monotonic
    _table: OrderedDict[str, _Window] = field(default_factory=OrderedDict)

    def retry_after(self, *keys: str) -> int | None:
        """Seconds to wait when any key is over its limit, else None."""
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
        now = self.clock()
        for key in keys:
            entry = self._table.get(key)
            if entry is None or now - entry.started >= self.window:
                entry = self._table[key] = _Window(now)
            entry.failures += 1
            self._table.move_to_end(key)
        while len(self._table) > self.max_keys:
            self._table.popitem(last=False)
