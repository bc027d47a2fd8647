"""Verification keys of the JWT issuers kubemint federates with, refreshed off the request path.

- The cluster itself: projected ServiceAccount tokens are verified against the API server's
  OIDC discovery document and `/openid/v1/jwks`, fetched through the token server's own
  API client (ServiceAccounts may read them by default). TokenReview would be an API call per
  request, which the token server never makes; local verification also keeps working while
  the API server is away. The cost: a token revoked by deleting its pod or ServiceAccount
  stays valid until it expires (projected tokens are short-lived, 1 h by default), and
  kubemint additionally requires the named ServiceAccount to exist in its view.
- External issuers with a `jwksUri`: fetched over HTTPS.

Each set is refreshed every `refresh_every` seconds and, when a token names an unknown `kid`,
soon after (at most once per `cooldown`), in a background thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

log = logging.getLogger("kubemint.issuers")
Fetch = Callable[[], tuple[str | None, dict[str, Any]]]  # → (issuer, JWKS)
MAX_DOCUMENT = 512 * 1024


@dataclass
class KeySource:
    fetch: Fetch
    issuer: str | None = None
    jwks: dict[str, Any] | None = None
    fetched_at: float = 0.0
    wanted_at: float = 0.0


class IssuerKeys:
    def __init__(self, refresh_every: float = 300.0, cooldown: float = 10.0) -> None:
        self.refresh_every = refresh_every
        self.cooldown = cooldown
        self._sources: dict[str, KeySource] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def add(self, name: str, fetch: Fetch) -> None:
        with self._lock:
            if name not in self._sources:
                self._sources[name] = KeySource(fetch)
                self._wake.set()

    def keep_only(self, names: set[str]) -> None:
        """Drop sources no longer referenced (external issuers removed from all accounts)."""
        with self._lock:
            for name in set(self._sources) - names - {"kubernetes"}:
                del self._sources[name]

    def get(self, name: str) -> tuple[str | None, dict[str, Any] | None]:
        source = self._sources.get(name)
        return (source.issuer, source.jwks) if source else (None, None)

    def want_refresh(self, name: str) -> None:
        """A token named an unknown key: refresh soon (rate-limited), in the background."""
        source = self._sources.get(name)
        if source is not None and time.monotonic() - source.fetched_at > self.cooldown:
            source.wanted_at = time.monotonic()
            self._wake.set()

    def run(self, halt: threading.Event) -> None:
        while not halt.is_set():
            now = time.monotonic()
            with self._lock:
                due = [
                    (name, s)
                    for name, s in self._sources.items()
                    if now - s.fetched_at > self.refresh_every or s.wanted_at > s.fetched_at
                ]
            for name, source in due:
                try:
                    source.issuer, source.jwks = source.fetch()
                    source.fetched_at = time.monotonic()
                except Exception as exc:  # keep the last good keys; retry after the cooldown
                    log.warning("fetching keys of %s failed: %s", name, type(exc).__name__)
                    source.fetched_at = time.monotonic() - self.refresh_every + self.cooldown
            self._wake.wait(timeout=min(self.cooldown, self.refresh_every))
            self._wake.clear()


def kubernetes_fetch(api: client.ApiClient) -> Fetch:
    """The cluster's ServiceAccount token issuer and keys, through the API client."""

    def get(path: str) -> dict[str, Any]:
        method, url, headers, body, post = api.param_serialize(
            "GET",
            path,
            header_params={"Accept": "application/json, application/jwk-set+json"},
            auth_settings=["BearerToken"],
        )
        response = api.call_api(method, url, headers, body, post, _request_timeout=10)
        if response.status != 200:
            raise ValueError(f"GET {path}: HTTP {response.status}")
        raw = response.read()  # type: ignore[no-untyped-call]
        document: dict[str, Any] = json.loads(raw[:MAX_DOCUMENT])
        return document

    def fetch() -> tuple[str | None, dict[str, Any]]:
        discovery = get("/.well-known/openid-configuration")
        return discovery.get("issuer"), get("/openid/v1/jwks")

    return fetch


def https_fetch(jwks_uri: str) -> Fetch:
    """An external issuer's JWKS over HTTPS (size- and time-limited)."""

    def fetch() -> tuple[str | None, dict[str, Any]]:
        if not jwks_uri.startswith("https://"):
            raise ValueError("jwksUri must be https")
        accept = {"Accept": "application/json, application/jwk-set+json"}
        request = urllib.request.Request(jwks_uri, headers=accept)  # noqa: S310 — https only
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 — https only
            document: dict[str, Any] = json.loads(response.read(MAX_DOCUMENT))
        return None, document

    return fetch
