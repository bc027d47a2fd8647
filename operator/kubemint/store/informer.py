"""List+watch one resource into a dict, resuming from resourceVersion.

Each informer runs in a thread with the synchronous official client: list (raw JSON), then
watch from the list's resourceVersion with bookmarks; a 410 Gone (history compacted) means
relist; any other failure reconnects with capped exponential backoff. While disconnected the
last known objects stay in place, so the token server keeps serving from what it has, and
`stale_for()` says for how long the view may have missed changes.

For a resource with many objects of which few matter (every Kubernetes ServiceAccount in the
cluster), an informer can ask for metadata only (`metadata_only`), keep a reduced copy of each
object (`transform`), list in pages (`page_size`), and tell its owner only about the changes
that matter (`relevant`): memory and rebuilds then scale with what kubemint uses.

An informer can also feed an index of its own, event by event (`sink`: the whole list on a
relist, then each change), for data that must not wait for a rebuild of the whole view
(revocations, `kubemint.store.revocations.RevocationIndex`).

Each informer also keeps the keys that changed since its owner last asked (`changes()`), so the
token server's view re-reads only those objects (kubemint.store.builder); a relist reports
everything, since the new list may differ from the old one anywhere.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("kubemint.informer")
Body = dict[str, Any]
MAX_BACKOFF = 8.0  # reconnect soon after an API server outage; a watch is cheap
# PartialObjectMetadata, as client-go's metadata informers ask for it: the list and the watch
# each need their own media type (a watch sent the list's type gets no events).
METADATA_LIST = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
METADATA_WATCH = {"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"}
ABSENT_RECHECK = 30.0  # how often an optional resource that does not exist is looked for


class Sink(Protocol):
    def reset(self, bodies: list[Body]) -> None: ...
    def apply(self, event_type: str, body: Body) -> None: ...


@dataclass(frozen=True)
class Changes:
    """What changed since the last `Informer.changes()`: the current body of each changed key
    (None: deleted). `full`: `bodies` holds every object, and a key not in it is gone."""

    full: bool
    bodies: dict[str, Body | None]


# Kept by no reader of the view: the API server's field bookkeeping, what kubectl last applied
# (a second copy of the spec) and status (the view re-derives what status says).
_UNREAD_META = ("managedFields",)
_UNREAD_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"


def slim(body: Body) -> Body:
    """`body` without what nobody reads from the view: about half of a typical object."""
    meta = dict(body.get("metadata") or {})
    for name in _UNREAD_META:
        meta.pop(name, None)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and _UNREAD_ANNOTATION in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != _UNREAD_ANNOTATION}
    return {k: v for k, v in body.items() if k != "status"} | {"metadata": meta}


def key_of(body: Body) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class Informer:
    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        *args: Any,
        on_change: Callable[[], None],
        label_selector: str | None = None,
        timeout_seconds: int = 60,
        metadata_only: bool = False,
        transform: Callable[[Body], Body] | None = None,
        relevant: Callable[[Body], bool] | None = None,
        page_size: int | None = None,
        absent_ok: bool = False,
        sink: Sink | None = None,
    ) -> None:
        """`absent_ok`: the resource may not exist (a CRD newer than the cluster's, e.g. after
        an upgrade whose CRDs were not applied yet): then it counts as synced and empty, and
        is looked for again every ABSENT_RECHECK seconds, instead of keeping the whole view
        unsynced."""
        self.name = name
        self._list_fn = list_fn
        self._args = args
        self._on_change = on_change
        self._selector = label_selector
        self._timeout = timeout_seconds
        self._metadata_only = metadata_only
        self._transform = transform
        self._relevant = relevant
        self._page_size = page_size
        self._absent_ok = absent_ok
        self._sink = sink
        self._lock = threading.Lock()
        self._objects: dict[str, Body] = {}
        self._changed: set[str] | None = None  # keys changed since changes(); None: all
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self.synced = threading.Event()
        self._connected_since: float | None = None
        self._disconnected_at: float | None = time.monotonic()

    def objects(self) -> list[Body]:
        with self._lock:
            return list(self._objects.values())

    def changes(self, everything: bool = False) -> Changes:
        """The objects changed since the previous call (`everything`: report all of them)."""
        with self._lock:
            changed, self._changed = self._changed, set()
            if changed is None or everything:
                return Changes(True, dict(self._objects))
            return Changes(False, {key: self._objects.get(key) for key in changed})

    def stale_for(self) -> float:
        """Seconds since the watch last had a live connection (0 while connected)."""
        if self._connected_since is not None:
            return 0.0
        return time.monotonic() - (self._disconnected_at or time.monotonic())

    def run(self, halt: threading.Event) -> None:
        """Thread body: keep the dict current until `halt` is set."""
        backoff = 0.5
        version: str | None = None
        while not halt.is_set():
            try:
                if version is None:
                    version = self._relist()
                for event_type, body in self._events(version):
                    version = body["metadata"].get("resourceVersion", version)
                    self._connected()
                    backoff = 0.5
                    if event_type != "BOOKMARK":
                        self._apply(event_type, body)
                    if halt.is_set():
                        return
                self._connected()  # a watch that ended by timeout is healthy
            except ApiException as exc:
                if exc.status == 410:
                    version = None  # history compacted: start over from a fresh list
                    continue
                if exc.status == 404 and self._absent_ok:
                    version = None
                    self._absent(halt)
                    continue
                self._failed(halt, f"API error {exc.status}", backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except Exception as exc:  # network failures of every shape: keep the last view
                if halt.is_set():
                    return
                self._failed(halt, type(exc).__name__, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def stop(self) -> None:
        self._watch.stop()  # type: ignore[no-untyped-call]

    def _relist(self) -> str:
        kwargs: dict[str, Any] = {"_preload_content": False, **self._common(METADATA_LIST)}
        if self._page_size:
            kwargs["limit"] = self._page_size
        objects: dict[str, Body] = {}
        while True:  # pages of one consistent list: `continue` until the server has no more
            listing = json.loads(self._list_fn(*self._args, **kwargs).data)
            for item in listing.get("items", []):
                objects[key_of(item)] = self._reduce(item)
            following = (listing.get("metadata") or {}).get("continue")
            if not following:
                break
            kwargs["_continue"] = following
        with self._lock:
            self._objects = objects
            self._changed = None
        if self._sink is not None:
            self._sink.reset(list(objects.values()))
        self._connected()
        self.synced.set()
        self._on_change()
        version: str = listing["metadata"]["resourceVersion"]
        return version

    def _common(self, metadata: Mapping[str, str]) -> dict[str, Any]:
        """Arguments that the list and the watch share (`metadata`: its Accept header)."""
        kwargs: dict[str, Any] = {}
        if self._selector:
            kwargs["label_selector"] = self._selector
        if self._metadata_only:
            kwargs["_headers"] = dict(metadata)
        return kwargs

    def _reduce(self, body: Body) -> Body:
        return self._transform(body) if self._transform is not None else body

    def _events(self, version: str) -> Iterator[tuple[str, Body]]:
        kwargs: dict[str, Any] = {
            "resource_version": version,
            "timeout_seconds": self._timeout,
            "allow_watch_bookmarks": True,
            **self._common(METADATA_WATCH),
        }
        stream = self._watch.stream(self._list_fn, *self._args, **kwargs)  # type: ignore[no-untyped-call]
        for event in stream:
            if event["type"] == "ERROR":
                raw = event.get("raw_object") or {}
                raise ApiException(status=raw.get("code", 500), reason=raw.get("reason"))
            yield event["type"], event["raw_object"]

    def _apply(self, event_type: str, body: Body) -> None:
        key = key_of(body)
        with self._lock:
            if event_type == "DELETED":
                self._objects.pop(key, None)
            else:
                self._objects[key] = self._reduce(body)
            if self._changed is not None and self._sink is None:  # a sink needs no changes()
                self._changed.add(key)
        if self._sink is not None:
            self._sink.apply(event_type, self._reduce(body))
        if self._relevant is None or self._relevant(body):
            self._on_change()

    def _absent(self, halt: threading.Event) -> None:
        with self._lock:
            self._objects = {}
            self._changed = None
        if self._sink is not None:
            self._sink.reset([])
        self._connected()
        if not self.synced.is_set():
            log.warning("%s: the resource does not exist (CRD not installed?)", self.name)
        self.synced.set()
        self._on_change()
        halt.wait(ABSENT_RECHECK)

    def _connected(self) -> None:
        if self._connected_since is None:
            self._connected_since = time.monotonic()
            self._disconnected_at = None

    def _failed(self, halt: threading.Event, why: str, backoff: float) -> None:
        if self._connected_since is not None:
            log.warning("watch of %s lost (%s); serving the last known view", self.name, why)
            self._connected_since = None
            self._disconnected_at = time.monotonic()
        halt.wait(backoff)
