"""Give the memory view updates freed back to the operating system (glibc's malloc_trim).

The view's pieces are small and long-lived, the bodies each update reads are large and
short-lived: glibc keeps what they freed in its heaps (and the per-thread arenas of the
informer and builder threads) instead of returning it, so the token server's RSS grows past
what it holds. `trim()` after updates, at most every `every` seconds, hands whole free pages
back (madvise; with the GIL released, so requests go on meanwhile). Elsewhere than glibc it
does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger("kubemint.view")
TRIM_EVERY = 10.0  # seconds: at most one trim per this, and only after an update


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return function


def rss() -> int:
    """This process's resident set, in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Trimmer:
    def __init__(self, every: float = TRIM_EVERY) -> None:
        self.every = every
        self._trim = _malloc_trim()
        self._last = time.monotonic()
        self.returned = 0  # bytes of RSS the trims gave back, in total

    def after_update(self) -> None:
        """Trim if the last trim is `every` seconds old."""
        if self._trim is None or time.monotonic() - self._last < self.every:
            return
        before = rss()
        self._trim(0)
        self._last = time.monotonic()
        freed = before - rss()
        if freed > 0:
            self.returned += freed
        if freed >= 1 << 20:
            log.info("returned %.1f MiB of freed memory to the OS", freed / 2**20)
