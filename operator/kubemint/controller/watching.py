"""A label-selected list+watch in a thread, handing events one at a time to async code.

kopf filters labels on the client side, so watches that must see only kubemint's own objects
(managed Secrets, audience ownership records) use a server-side label selector here instead.
The watch resumes from its resourceVersion, relists on 410 Gone and retries after errors; the
handler runs on the event loop, one event at a time, in the order the API server sent them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

Body = dict[str, Any]
Handler = Callable[[str, Body], Awaitable[None]]
RELISTED = "RELISTED"  # the event type of objects replayed after a relist
log = logging.getLogger("kubemint.watch")


class LabelWatch:
    def __init__(
        self,
        what: str,
        list_call: Callable[..., Any],
        *args: Any,
        selector: str,
        events: Collection[str],
        handle: Handler,
        replay_on_relist: bool = False,
    ) -> None:
        """Watch `list_call(*args, label_selector=selector)`; `handle(type, object)` each event
        whose type is in `events`. With `replay_on_relist`, every listed object is handed on
        as RELISTED after a relist (events may have been missed meanwhile)."""
        self.what = what
        self._list = list_call
        self._args = args
        self._selector = selector
        self._events = frozenset(events)
        self._handle = handle
        self._replay = replay_on_relist
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Body]] = asyncio.Queue()
        halt = threading.Event()
        thread = threading.Thread(
            target=self._stream, args=(loop, queue, halt), name=f"{self.what}-watch", daemon=True
        )
        thread.start()
        try:
            while not stop.is_set():
                getter = asyncio.ensure_future(queue.get())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({getter, stopper}, return_when="FIRST_COMPLETED")
                stopper.cancel()
                if getter not in done:
                    getter.cancel()
                    break
                await self._handle(*getter.result())
        finally:
            halt.set()
            self._watch.stop()  # type: ignore[no-untyped-call]

    def _stream(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[tuple[str, Body]],
        halt: threading.Event,
    ) -> None:
        version: str | None = None
        listed_before = False
        while not halt.is_set():
            try:
                if version is None:
                    response = self._list(
                        *self._args, label_selector=self._selector, _preload_content=False
                    )
                    listing = json.loads(response.data)
                    version = listing["metadata"]["resourceVersion"]
                    if self._replay and listed_before:
                        for item in listing.get("items", []):
                            loop.call_soon_threadsafe(queue.put_nowait, (RELISTED, item))
                    listed_before = True
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    self._list,
                    *self._args,
                    label_selector=self._selector,
                    resource_version=version,
                    timeout_seconds=30,
                    allow_watch_bookmarks=True,
                ):
                    raw = event["raw_object"]
                    version = raw["metadata"].get("resourceVersion", version)
                    if event["type"] in self._events:
                        loop.call_soon_threadsafe(queue.put_nowait, (event["type"], raw))
                    if halt.is_set():
                        return
            except ApiException as exc:
                if exc.status == 410:  # history compacted: start over from a fresh list
                    version = None
                    continue
                if halt.is_set():
                    return
                log.warning("%s watch failed (%s); retrying", self.what, exc.reason)
                halt.wait(2)
            except Exception as exc:  # the watch must outlive network hiccups
                if halt.is_set():
                    return
                log.warning("%s watch interrupted (%s); retrying", self.what, type(exc).__name__)
                halt.wait(2)
