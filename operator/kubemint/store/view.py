"""The token server's live view: informers feed a snapshot that is swapped atomically.

Rebuilds are debounced (a burst of changes costs one rebuild) and run off the event loop.
Requests read `snapshot()` (one attribute read) and never touch the Kubernetes API.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from kubernetes import client

from kubemint.api import trustedissuer
from kubemint.api.meta import GROUP, LABEL_MANAGED_BY, MANAGED_BY, PLURALS, VERSION
from kubemint.store.informer import Informer
from kubemint.store.revocations import SELECTOR as REVOCATIONS_SELECTOR
from kubemint.store.snapshot import KeyCache, Snapshot, build_snapshot

log = logging.getLogger("kubemint.view")
DEBOUNCE = 0.05


class View(Protocol):
    def snapshot(self) -> Snapshot: ...
    def synced(self) -> bool: ...
    def stale_for(self) -> float: ...


class StaticView:
    """A fixed snapshot (tests, and the bare benchmark)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def synced(self) -> bool:
        return True

    def stale_for(self) -> float:
        return 0.0


class ClusterView:
    def __init__(
        self,
        api_client: client.ApiClient,
        server_namespace: str,
        on_snapshot: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.namespace = server_namespace
        self._on_snapshot = on_snapshot
        custom = client.CustomObjectsApi(api_client)
        core = client.CoreV1Api(api_client)
        self._dirty = threading.Event()
        self._halt = threading.Event()
        self._current = Snapshot()
        self._keys = KeyCache()
        self.rebuilt_at = 0.0

        def kind(kind_name: str) -> Informer:
            plural = PLURALS[kind_name]
            return Informer(
                plural,
                custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                plural,
                on_change=self._dirty.set,
            )

        self._informers = {
            "clients": kind("OAuth2Client"),
            "accounts": kind("ServiceAccount"),
            "rules": kind("AccessRule"),
            "keys": kind("SigningKey"),
            # Only the server namespace's: a TrustedIssuer anywhere else trusts nothing.
            "trusted": Informer(
                "trustedissuers",
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                server_namespace,
                trustedissuer.PLURAL,
                on_change=self._dirty.set,
                absent_ok=True,
            ),
            "revocations": Informer(
                "revocations",
                core.list_namespaced_config_map,
                server_namespace,
                on_change=self._dirty.set,
                label_selector=REVOCATIONS_SELECTOR,
            ),
            "secrets": Informer(
                "secrets",
                core.list_namespaced_secret,
                server_namespace,
                on_change=self._dirty.set,
                label_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}",
            ),
        }
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for name, informer in self._informers.items():
            thread = threading.Thread(
                target=informer.run, args=(self._halt,), name=f"watch-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        builder = threading.Thread(target=self._rebuild_loop, name="snapshot", daemon=True)
        builder.start()
        self._threads.append(builder)

    def stop(self) -> None:
        self._halt.set()
        self._dirty.set()
        for informer in self._informers.values():
            informer.stop()

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.synced():
                return True
            time.sleep(0.05)
        return False

    def snapshot(self) -> Snapshot:
        return self._current

    def synced(self) -> bool:
        return self.rebuilt_at > 0 and all(i.synced.is_set() for i in self._informers.values())

    def stale_for(self) -> float:
        return max(i.stale_for() for i in self._informers.values())

    def _rebuild_loop(self) -> None:
        while not self._halt.is_set():
            self._dirty.wait()
            if self._halt.is_set():
                return
            time.sleep(DEBOUNCE)  # let a burst of events settle into one rebuild
            self._dirty.clear()
            if not all(i.synced.is_set() for i in self._informers.values()):
                continue
            try:
                self._current = self._build()
                self.rebuilt_at = time.monotonic()
                if self._on_snapshot is not None:
                    self._on_snapshot(self._current)
            except Exception:  # keep serving the previous snapshot
                log.exception("snapshot rebuild failed; keeping the previous view")

    def _build(self) -> Snapshot:
        i = self._informers
        return build_snapshot(
            server_namespace=self.namespace,
            clients=i["clients"].objects(),
            accounts=i["accounts"].objects(),
            rules=i["rules"].objects(),
            signing_keys=i["keys"].objects(),
            secrets=i["secrets"].objects(),
            key_cache=self._keys,
            revocations=i["revocations"].objects(),
            trusted_issuers=i["trusted"].objects(),
        )
