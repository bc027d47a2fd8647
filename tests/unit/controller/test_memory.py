"""release_memory: the heap a finished leadership term leaves behind goes back to the system."""

from __future__ import annotations

from kubemint.controller.memory import release_memory

BLOCK = 2048  # above pymalloc's 512-byte limit, below mmap's threshold: glibc's heap
MB = 1024 * 1024


def resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_a_fragmented_heap_is_returned_after_a_term() -> None:
    """As after a term: 64 MB of bodies freed but for every 16th, which pins the heap's top
    and keeps free() from shrinking it; only a trim gives the pages between back."""
    blocks = [b"x" * BLOCK for _ in range(64 * MB // BLOCK)]
    survivors = blocks[::16]
    del blocks
    before = resident()

    assert release_memory()  # glibc
    released = before - resident()

    assert released >= 32 * MB, f"only {released / MB:.1f} MB went back to the system"
    assert len(survivors) == 64 * MB // BLOCK // 16
