"""The JWKS cache: one fetch at a time per issuer, cached keys answer while it runs, and no
lookup waits longer than the fetch deadline (issue 10 finding 7)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from kubemint.verify import JWKSCache, VerificationUnavailable

KNOWN = {"kid": "known", "kty": "OKP"}
ROTATED = {"kid": "rotated", "kty": "OKP"}


class HeldIssuer:
    """A fetch function whose answers the test releases; counts fetches."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.fetches = 0
        self.keys: list[dict[str, Any]] = [KNOWN]
        self.hold = threading.Event()
        self.hold.set()  # answers at once until the test clears it
        self.arrived = threading.Event()

    def fetch(self, url: str) -> dict[str, Any]:
        self.fetches += 1
        self.arrived.set()
        assert self.hold.wait(timeout=10)
        return {"keys": self.keys}

    def cache(self, **options: Any) -> JWKSCache:
        options.setdefault("cooldown", 10)
        return JWKSCache("https://issuer.test/jwks", fetch=self.fetch, clock=self.clock, **options)

    def clock(self) -> float:
        return self.now

    def held(self) -> None:
        self.hold.clear()
        self.arrived.clear()


def _filled(issuer: HeldIssuer, **options: Any) -> JWKSCache:
    cache = issuer.cache(**options)
    assert cache.key("known") == KNOWN
    issuer.now += 11  # past the cooldown: an unknown kid may be fetched for
    return cache


async def test_concurrent_lookups_of_an_unknown_kid_share_one_fetch() -> None:
    issuer = HeldIssuer()
    cache = _filled(issuer)
    issuer.held()
    issuer.keys = [KNOWN, ROTATED]
    waiting = [asyncio.create_task(cache.key_async("rotated")) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert issuer.arrived.is_set()
    assert not any(task.done() for task in waiting)  # they wait on the fetch...
    issuer.hold.set()
    assert await asyncio.gather(*waiting) == [ROTATED] * 5  # ...and all get its result
    assert issuer.fetches == 2  # the fill and one fetch for five lookups


async def test_the_event_loop_runs_on_while_a_lookup_waits_for_a_fetch() -> None:
    issuer = HeldIssuer()
    cache = _filled(issuer)
    issuer.held()
    waiting = asyncio.create_task(cache.key_async("rotated"))
    ticks = 0
    for _ in range(10):
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 10
    assert not waiting.done()
    assert await cache.key_async("known") == KNOWN  # a cached key answers meanwhile
    issuer.hold.set()
    assert await waiting is None  # fetched: not published, so an unknown key (401)


def test_a_stale_set_answers_at_once_and_is_refreshed_in_the_background() -> None:
    issuer = HeldIssuer()
    cache = _filled(issuer, ttl=300)
    issuer.now += 300
    issuer.held()
    issuer.keys = [ROTATED]
    start = time.monotonic()
    assert cache.key("known") == KNOWN  # not waiting for the held refresh
    assert time.monotonic() - start < 1
    assert issuer.arrived.wait(timeout=5)  # but the refresh was started
    issuer.hold.set()
    deadline = time.monotonic() + 5
    while cache.key("known") is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.key("rotated") == ROTATED
    assert cache.key("known") is None
    assert issuer.fetches == 2


@pytest.mark.parametrize("lookup", ["key", "key_async"])
def test_a_lookup_waits_for_a_fetch_no_longer_than_the_deadline(lookup: str) -> None:
    issuer = HeldIssuer()
    cache = _filled(issuer, timeout=0.2)
    issuer.held()

    def look() -> object:
        if lookup == "key":
            return cache.key("rotated")
        return asyncio.run(cache.key_async("rotated"))

    start = time.monotonic()
    with pytest.raises(VerificationUnavailable) as caught:
        look()
    assert time.monotonic() - start < 2
    assert caught.value.retry_after >= 1
    issuer.keys = [KNOWN, ROTATED]
    issuer.hold.set()  # the fetch goes on without the waiter that gave up, and lands
    deadline = time.monotonic() + 5
    while cache.key("rotated") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.key("rotated") == ROTATED
    assert issuer.fetches == 2


def test_refresh_fetches_in_the_calling_thread_and_raises_its_failure() -> None:
    issuer = HeldIssuer()
    cache = issuer.cache()
    cache.refresh()
    assert issuer.fetches == 1
    assert cache.key("known") == KNOWN
    issuer.keys = "nope"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="no 'keys' list"):
        cache.refresh()
    assert cache.key("known") == KNOWN  # the good set is kept
