"""A JWKS fetched over HTTP and cached; refetched when stale or when a token names an unknown
`kid` (at most once per cooldown, so garbage kids cannot make us hammer the issuer)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

DEFAULT_TTL = 300.0
DEFAULT_COOLDOWN = 10.0


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
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> dict[str, Any] | None:
        """The JWK with this kid, refreshing the set when needed."""
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at > self.ttl:
            self.refresh()
        key = self._keys.get(kid)
        if key is None and self._fetched_at is not None and now - self._fetched_at > self.cooldown:
            self.refresh()  # a rotation may have published it since
            key = self._keys.get(kid)
        return key

    def refresh(self) -> None:
        with self._lock:
            document = self._fetch(self.url)
            keys = document.get("keys") if isinstance(document, dict) else None
            if not isinstance(keys, list):
                raise ValueError("the JWKS document has no 'keys' list")
            self._keys = {k["kid"]: k for k in keys if isinstance(k, dict) and "kid" in k}
            self._fetched_at = self._clock()


def _http_fetch(url: str) -> dict[str, Any]:
    response = httpx.get(url, timeout=10, headers={"Accept": "application/json"})
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document
