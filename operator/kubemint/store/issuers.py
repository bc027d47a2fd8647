"""Verification keys of the JWT issuers kubemint federates with, refreshed off the request path.

- The cluster itself: projected ServiceAccount tokens are verified against the API server's
  OIDC discovery document and `/openid/v1/jwks`, fetched through the token server's own
  API client (ServiceAccounts may read them by default). TokenReview would be an API call per
  request, which the token server never makes; local verification also keeps working while
  the API server is away. The cost: a token revoked by deleting its pod or ServiceAccount
  stays valid until it expires (projected tokens are short-lived, 1 h by default), and
  kubemint additionally requires the named ServiceAccount to exist in its view.
- Issuers with a `jwksUri` (tenants' own, TrustedIssuers): fetched over HTTPS by
  `kubemint.store.jwks_fetch` (one deadline, a size cap, no internal addresses).

Each source is refreshed every `refresh_every` seconds and, when a token names an unknown
`kid`, soon after (at most once per `cooldown`). The cluster's source has a thread of its
own, so no URL a tenant writes can delay it. The URL sources run as one task each on an
event loop of their own, at most `workers` fetches at a time; a source that keeps failing
backs off (doubling from `cooldown` up to `refresh_every`) and may hold at most half of the
slots, so sources that answer are fetched while silent ones wait out their deadlines.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from kubemint.store.jwks_fetch import FetchError, FetchPolicy, fetch_jwks

log = logging.getLogger("kubemint.issuers")
Fetch = Callable[[], tuple[str | None, dict[str, Any]]]  # → (issuer, JWKS)
MAX_DOCUMENT = 512 * 1024
KUBERNETES = "kubernetes"
URI_PREFIX = "jwks:"  # a URL source's name: "jwks:" + the URL


def uri_source(uri: str) -> str:
    return URI_PREFIX + uri


@dataclass
class KeySource:
    issuer: str | None = None
    jwks: dict[str, Any] | None = None
    fetched_at: float = 0.0  # last successful fetch (monotonic)
    attempted_at: float = 0.0  # last attempt, successful or not
    failures: int = 0  # consecutive
    wake: threading.Event | asyncio.Event | None = field(default=None, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class IssuerKeys:
    def __init__(
        self,
        refresh_every: float = 300.0,
        cooldown: float = 10.0,
        policy: FetchPolicy | None = None,
        workers: int = 16,
    ) -> None:
        self.refresh_every = refresh_every
        self.cooldown = cooldown
        self.policy = policy or FetchPolicy()
        self.workers = max(2, workers)
        self.failures: Counter[str] = Counter()  # reason → fetches failed (for /metrics)
        self._cluster: Fetch | None = None
        self._sources: dict[str, KeySource] = {}
        self._wanted: set[str] = set()  # URIs to track (set before and while running)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- what the rest of the server calls ------------------------------------------------

    def set_cluster_source(self, fetch: Fetch) -> None:
        """The cluster's own issuer (`KUBERNETES`, see kubernetes_fetch), fetched in a thread
        of its own."""
        self._cluster = fetch
        with self._lock:
            self._sources.setdefault(KUBERNETES, KeySource(wake=threading.Event()))

    def track(self, uris: Iterable[str]) -> None:
        """Keep exactly these jwks URIs fetched (the snapshot's admitted ones)."""
        with self._lock:
            self._wanted = set(uris)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._sync_tasks)

    def get(self, name: str) -> tuple[str | None, dict[str, Any] | None]:
        source = self._sources.get(name)
        return (source.issuer, source.jwks) if source else (None, None)

    def want_refresh(self, name: str) -> None:
        """A token named an unknown key: refresh soon (at most once per cooldown)."""
        source = self._sources.get(name)
        if source is None or time.monotonic() - source.attempted_at < self.cooldown:
            return
        wake = source.wake
        if isinstance(wake, threading.Event):
            wake.set()
        elif isinstance(wake, asyncio.Event) and self._loop is not None:
            self._loop.call_soon_threadsafe(wake.set)

    def states(self) -> Counter[str]:
        """Sources by state (`ok`, `failing`, `pending`), for /metrics."""
        return Counter(
            "failing" if s.failures else "ok" if s.jwks is not None else "pending"
            for s in list(self._sources.values())
        )

    def run(self, halt: threading.Event) -> None:
        """Fetch until `halt`: the cluster's source in a thread of its own, the URL sources on
        an event loop in this thread."""
        if self._cluster is not None:
            threading.Thread(
                target=self._run_cluster, args=(halt,), name="issuer-keys-cluster", daemon=True
            ).start()
        asyncio.run(self._run_uris(halt))

    # -- the cluster's source ----------------------------------------------------------------

    def _run_cluster(self, halt: threading.Event) -> None:
        source, fetch = self._sources[KUBERNETES], self._cluster
        assert isinstance(source.wake, threading.Event)
        assert fetch is not None
        while not halt.is_set():
            source.attempted_at = time.monotonic()
            try:
                source.issuer, source.jwks = fetch()
                source.fetched_at, source.failures = time.monotonic(), 0
            except Exception as exc:  # keep the last good keys; retry after the backoff
                self._failed(KUBERNETES, source, type(exc).__name__, "")
            source.wake.wait(timeout=self._next_in(source))
            source.wake.clear()

    # -- the URL sources ---------------------------------------------------------------------

    async def _run_uris(self, halt: threading.Event) -> None:
        self._slots = asyncio.Semaphore(self.workers)
        self._failing_slots = asyncio.Semaphore(self.workers // 2)
        loop = self._loop = asyncio.get_running_loop()
        # Name lookups run in threads, which a deadline cannot stop: a lookup an attacker's
        # DNS server keeps slow goes on after its fetch gave up. A pool of its own, as large as
        # the fetch slots, keeps them from queueing behind other work; failing sources hold
        # at most half the slots, so at most about half the lookup threads.
        loop.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="issuer-dns")
        )
        stopped = asyncio.Event()

        def watch() -> None:
            halt.wait()
            loop.call_soon_threadsafe(stopped.set)

        threading.Thread(target=watch, name="issuer-keys-halt", daemon=True).start()
        self._sync_tasks()
        await stopped.wait()
        for source in list(self._sources.values()):
            if source.task is not None:
                source.task.cancel()

    def _sync_tasks(self) -> None:
        """On the loop: a task for each wanted URI, none for the others."""
        with self._lock:
            names = {uri_source(u): u for u in self._wanted}
            for name in [n for n in self._sources if n.startswith(URI_PREFIX)]:
                if name not in names:
                    source = self._sources.pop(name)
                    if source.task is not None:
                        source.task.cancel()
            for name, uri in names.items():
                if name not in self._sources:
                    source = KeySource(wake=asyncio.Event())
                    self._sources[name] = source
                    source.task = asyncio.get_running_loop().create_task(
                        self._keep_fresh(name, uri, source), name=name
                    )

    async def _keep_fresh(self, name: str, uri: str, source: KeySource) -> None:
        wake = source.wake
        assert isinstance(wake, asyncio.Event)
        while True:
            if source.attempted_at:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=self._next_in(source))
            wake.clear()
            failing = source.failures > 0
            async with self._failing_slots if failing else _NO_LIMIT, self._slots:
                source.attempted_at = time.monotonic()
                try:
                    source.jwks = await fetch_jwks(uri, self.policy)
                    source.fetched_at, source.failures = time.monotonic(), 0
                except FetchError as exc:
                    self._failed(name, source, exc.reason, str(exc))
                except Exception as exc:  # a bug here must not end the source's task
                    self._failed(name, source, "error", type(exc).__name__)
                finally:
                    source.attempted_at = time.monotonic()  # waits count from the end

    # -- shared ------------------------------------------------------------------------------

    def _failed(self, name: str, source: KeySource, reason: str, message: str) -> None:
        """Keep the last good keys; say why (never with what the server sent)."""
        source.failures += 1
        source.attempted_at = time.monotonic()
        with self._lock:  # two threads count here
            self.failures[reason] += 1
        log.warning(
            "fetching keys of %s failed (%s): %s; keeping %s, retrying in %ds",
            name,
            reason,
            message or "-",
            "the last good keys" if source.jwks is not None else "no keys",
            round(self._next_in(source)),
        )

    def _next_in(self, source: KeySource) -> float:
        """Seconds until the next attempt: refresh_every after a success; after failures, the
        cooldown doubled per consecutive failure, at most refresh_every."""
        if source.failures:
            wait = min(self.refresh_every, self.cooldown * 2.0 ** min(source.failures - 1, 16))
        else:
            wait = self.refresh_every
        return max(0.0, source.attempted_at + wait - time.monotonic())


class _Unlimited:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *_: object) -> None:
        return None


_NO_LIMIT = _Unlimited()


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
