"""Giving memory back to the system once a leadership term has ended.

A term that ends (the lease lost) leaves behind the garbage of everything kopf held for it:
every object's body, index entries, per-object workers. Python frees those blocks, but glibc's
allocator keeps the freed pages in its arenas (one per thread that allocated), so the resident
set stays at the term's high-water mark and the next term, re-listing every object, builds its
peak on top of the fragments: the operator's RSS crept up with every re-won lease. Collecting
the cycles and trimming the heap at the end of a term returns those pages before the next one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from functools import cache

log = logging.getLogger("kubemint.memory")


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """glibc's malloc_trim, or None on another C library (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_memory() -> bool:
    """Collect garbage cycles and hand the freed heap back to the system; whether the heap
    could be trimmed (glibc only)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        log.debug("malloc_trim is not available; freed memory stays with the allocator")
        return False
    trim(0)
    return True
