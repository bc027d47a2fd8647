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

An informer keeps no copy of the objects: it hands each change to its owner once
(`changes()`: the bodies that changed since the previous call, the whole list after a relist)
and forgets it, so the objects' parsed pieces in the token server's view
(kubemint.store.builder) are their only copy in memory. An owner that needs everything again
(its update failed half-way) asks for a relist (`relist()`), which cuts the running watch.
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
    (None: deleted). `full`: a relist came first, so `bodies` holds every object (with the
    changes since applied), and a key not in it is gone."""

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
        # What changed since changes() (a key's latest body, None: deleted); `_full`: a relist
        # put every object there. Nothing is kept once handed over.
        self._pending: dict[str, Body | None] = {}
        self._full = False
        self._relist_wanted = threading.Event()
        self._absent_now = False
        self._response: Any = None  # the running watch's HTTP response (relist() cuts it)
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self.synced = threading.Event()
        self._connected_since: float | None = None
        self._disconnected_at: float | None = time.monotonic()

    def changes(self) -> Changes:
        """The objects changed since the previous call; handed over, then forgotten."""
        with self._lock:
            changes = Changes(self._full, self._pending)
            self._pending, self._full = {}, False
        return changes

    def relisted(self) -> bool:
        """Whether the next `changes()` holds every object (a relist since the last call)."""
        return self._full

    def relist(self) -> None:
        """List everything again soon (the next `changes()` is then full): cuts the running
        watch, whose thread then relists at once. Until then changes() keeps reporting."""
        self._relist_wanted.set()
        with self._lock:
            if self._absent_now:  # nothing to list: the resource does not exist
                self._pending, self._full = {}, True
                self._relist_wanted.clear()
                absent = True
            else:
                absent = False
        if absent:
            self._on_change()
            return
        self._cut()

    def stale_for(self) -> float:
        """Seconds since the watch last had a live connection (0 while connected)."""
        if self._connected_since is not None:
            return 0.0
        return time.monotonic() - (self._disconnected_at or time.monotonic())

    def run(self, halt: threading.Event) -> None:
        """Thread body: list, then watch and report changes until `halt` is set."""
        backoff = 0.5
        version: str | None = None
        while not halt.is_set():
            try:
                if version is None or self._relist_wanted.is_set():
                    version = self._relist()
                for event_type, body in self._events(version):
                    version = body["metadata"].get("resourceVersion", version)
                    self._connected()
                    backoff = 0.5
                    if event_type != "BOOKMARK":
                        self._apply(event_type, body)
                    if halt.is_set():
                        return
                    if self._relist_wanted.is_set():
                        break
                if not self._relist_wanted.is_set():
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
                if self._relist_wanted.is_set():
                    continue  # relist() cut the watch: not a failure
                self._failed(halt, type(exc).__name__, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def stop(self) -> None:
        self._cut()

    def _cut(self) -> None:
        """End the running watch now, even while it waits for the next event."""
        self._watch.stop()  # type: ignore[no-untyped-call]
        response = self._response
        if response is not None and hasattr(response, "shutdown"):  # urllib3 >= 2.3
            try:
                response.shutdown()  # unblocks the watch thread's read
            except Exception:  # already closed: nothing to cut
                log.debug("%s: the watch was closed already", self.name)

    def _relist(self) -> str:
        self._relist_wanted.clear()  # a request from now on is answered by another relist
        kwargs: dict[str, Any] = {"_preload_content": False, **self._common(METADATA_LIST)}
        if self._page_size:
            kwargs["limit"] = self._page_size
        objects: dict[str, Body | None] = {}
        while True:  # pages of one consistent list: `continue` until the server has no more
            listing = json.loads(self._list_fn(*self._args, **kwargs).data)
            for item in listing.get("items", []):
                objects[key_of(item)] = self._reduce(item)
            following = (listing.get("metadata") or {}).get("continue")
            if not following:
                break
            kwargs["_continue"] = following
        if self._sink is not None:
            self._sink.reset([b for b in objects.values() if b is not None])
        else:
            with self._lock:
                self._pending, self._full, self._absent_now = objects, True, False
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
        # Called through `_call` (no docstring, so the client yields raw dicts and builds no
        # models), which keeps the response for _cut().
        stream = self._watch.stream(self._call, *self._args, **kwargs)  # type: ignore[no-untyped-call]
        for event in stream:
            if event["type"] == "ERROR":
                raw = event.get("raw_object") or {}
                raise ApiException(status=raw.get("code", 500), reason=raw.get("reason"))
            yield event["type"], event["raw_object"]

    def _call(self, *args: Any, **kwargs: Any) -> Any:
        self._response = self._list_fn(*args, **kwargs)
        return self._response

    def _apply(self, event_type: str, body: Body) -> None:
        reduced = self._reduce(body)
        if self._sink is not None:  # a sink keeps what it needs; changes() stay empty
            self._sink.apply(event_type, reduced)
        else:
            with self._lock:
                self._pending[key_of(body)] = None if event_type == "DELETED" else reduced
        if self._relevant is None or self._relevant(body):
            self._on_change()

    def _absent(self, halt: threading.Event) -> None:
        self._relist_wanted.clear()
        if self._sink is not None:
            self._sink.reset([])
        else:
            with self._lock:
                self._pending, self._full, self._absent_now = {}, True, True
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
