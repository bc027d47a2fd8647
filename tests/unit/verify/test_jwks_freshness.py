"""The JWKS cache honours the issuer's Cache-Control (max-age, less Age; no-cache/no-store),
within [cooldown, max_ttl], and counts the unknown-kid cooldown from the end of a fetch, so a
fetch that uses its whole timeout does not let the next one follow at once."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from kubemint.verify import Fetched, JWKSCache, VerificationUnavailable
from kubemint.verify.jwks_cache import freshness

KNOWN = {"kid": "known", "kty": "OKP"}


@pytest.mark.parametrize(
    ("cache_control", "age", "expected"),
    [
        (None, None, 300),  # the issuer says nothing: the default
        ("public, max-age=120", None, 120),
        ("max-age=120", "30", 90),  # a cache in between held it 30 s already
        ('max-age="120"', None, 120),
        ("public, MAX-AGE=120, s-maxage=5", None, 120),  # s-maxage is for shared caches
        ("max-age=1", None, 10),  # never below the cooldown: an issuer cannot make us hammer
        ("max-age=0", None, 10),
        ("no-cache", None, 10),
        ("no-store, max-age=600", None, 10),
        ("max-age=31536000", None, 86400),  # believed for a day at most
        ("max-age=soon", None, 300),  # not a number: as if unsaid
        ("max-age=120", "junk", 120),
        ("max-age=120", "500", 10),
    ],
)
def test_freshness_from_the_headers(
    cache_control: str | None, age: str | None, expected: float
) -> None:
    assert freshness(cache_control, age, default=300, floor=10, ceiling=86400) == expected


class Issuer:
    def __init__(self, cache_control: str | None = None) -> None:
        self.now = 1000.0
        self.fetches = 0
        self.cache_control = cache_control
        self.took = 0.0  # seconds each fetch takes on the clock
        self.down = False

    def clock(self) -> float:
        return self.now

    def fetch(self, url: str) -> Fetched:
        self.fetches += 1
        self.now += self.took
        if self.down:
            raise httpx.ReadTimeout("the issuer did not answer in time")
        return Fetched({"keys": [KNOWN]}, self.cache_control)

    def cache(self, **options: Any) -> JWKSCache:
        return JWKSCache("https://issuer.test/jwks", fetch=self.fetch, clock=self.clock, **options)


def _settle(condition: Any) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_the_cache_keeps_a_set_for_its_max_age_then_refreshes_in_the_background() -> None:
    issuer = Issuer("public, max-age=60")
    cache = issuer.cache(ttl=300, cooldown=10)
    assert cache.key("known") == KNOWN
    assert cache.fresh_for == 60
    issuer.now += 59
    assert cache.key("known") == KNOWN
    assert issuer.fetches == 1  # still fresh
    issuer.now += 2  # past max-age (the default ttl of 300 s would still hold it)
    assert cache.key("known") == KNOWN  # answered from the cache at once…
    _settle(lambda: issuer.fetches == 2)  # …while it is refetched in the background


def test_a_plain_document_keeps_the_default_ttl() -> None:
    issuer = Issuer()
    cache = JWKSCache(
        "https://issuer.test/jwks", fetch=lambda _: {"keys": [KNOWN]}, clock=issuer.clock, ttl=42
    )
    assert cache.key("known") == KNOWN
    assert cache.fresh_for == 42


def test_the_cooldown_counts_from_the_end_of_a_fetch_that_used_its_timeout() -> None:
    issuer = Issuer()
    issuer.down = True
    issuer.took = 12.0  # each attempt runs out its 12 s deadline, longer than the cooldown
    cache = issuer.cache(cooldown=10, timeout=12)
    with pytest.raises(VerificationUnavailable):
        cache.key("known")
    assert issuer.fetches == 1
    for kid in ("a", "b", "c"):  # unknown kids right after the timed-out fetch
        with pytest.raises(VerificationUnavailable) as caught:
            cache.key(kid)
        assert caught.value.retry_after == 10  # the whole cooldown is still ahead
    assert issuer.fetches == 1
    issuer.now += 10.5
    issuer.down = False
    issuer.took = 0.0
    assert cache.key("known") == KNOWN
    assert issuer.fetches == 2


def test_the_http_fetch_reads_cache_control_and_age(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubemint.verify import jwks_cache

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Cache-Control": "max-age=90", "Age": "5"}
        return httpx.Response(200, json={"keys": [KNOWN]}, headers=headers)

    client = httpx.Client(transport=httpx.MockTransport(handler))

    def stream(method: str, url: str, **kwargs: Any) -> Any:
        return client.stream(method, url, headers=kwargs.get("headers"))

    monkeypatch.setattr(jwks_cache.httpx, "stream", stream)
    fetched = jwks_cache._http_fetch("https://issuer.test/jwks", 5)
    assert fetched == Fetched({"keys": [KNOWN]}, "max-age=90", "5")
