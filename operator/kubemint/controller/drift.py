"""Drift repair: a Secret kubemint manages was deleted or edited by hand → its owner reconciles.

kopf filters labels on the client side, so watching Secrets through kopf would stream every
Secret in the cluster to the operator. This watch uses a server-side label selector instead.
A repair is requested by annotating the owning custom resource, which runs the owner's
normal kopf handler (with its indexes, lock, Events and status) like any other change.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
import threading
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from kubemint.api.meta import (
    GROUP,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    LABEL_OWNER_NAMESPACE,
    MANAGED_BY,
    PLURALS,
    VERSION,
    format_time,
)
from kubemint.controller.kube import ANNOTATION_DATA_HASH, data_hash
from kubemint.controller.runtime import Runtime

ANNOTATION_DRIFT = "kubemint.io/drift-detected"
log = logging.getLogger("kubemint.drift")


def drifted(event_type: str, secret: dict[str, Any]) -> str | None:
    """Why this watch event means drift (None when it is our own write or untouched)."""
    meta = secret.get("metadata") or {}
    if event_type == "DELETED":
        return "deleted"
    data = {
        k: base64.b64decode(v).decode(errors="replace")
        for k, v in (secret.get("data") or {}).items()
    }
    if (meta.get("annotations") or {}).get(ANNOTATION_DATA_HASH) != data_hash(data):
        return "edited"
    return None


class DriftWatcher:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        halt = threading.Event()
        thread = threading.Thread(
            target=self._stream, args=(loop, queue, halt), name="drift-watch", daemon=True
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
                event_type, secret = getter.result()
                await self._repair(event_type, secret)
        finally:
            halt.set()
            self._watch.stop()  # type: ignore[no-untyped-call]

    def _stream(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[tuple[str, dict[str, Any]]],
        halt: threading.Event,
    ) -> None:
        core = self.runtime.kube.core
        selector = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
        version: str | None = None
        while not halt.is_set():
            try:
                if version is None:
                    listing = core.list_secret_for_all_namespaces(
                        label_selector=selector, _preload_content=False
                    )
                    # raw response (not preloaded): only the resourceVersion is needed
                    version = json.loads(listing.data)["metadata"]["resourceVersion"]  # type: ignore[attr-defined]
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    core.list_secret_for_all_namespaces,
                    label_selector=selector,
                    resource_version=version,
                    timeout_seconds=30,
                    allow_watch_bookmarks=True,
                ):
                    raw = event["raw_object"]
                    version = raw["metadata"].get("resourceVersion", version)
                    if event["type"] in ("MODIFIED", "DELETED"):
                        loop.call_soon_threadsafe(queue.put_nowait, (event["type"], raw))
                    if halt.is_set():
                        return
            except ApiException as exc:
                if exc.status == 410:  # history compacted: relist
                    version = None
                    continue
                if halt.is_set():
                    return
                log.warning("secret watch failed (%s); retrying", exc.reason)
                halt.wait(2)
            except Exception as exc:  # the watch must outlive network hiccups
                if halt.is_set():
                    return
                log.warning("secret watch interrupted (%s); retrying", type(exc).__name__)
                halt.wait(2)

    async def _repair(self, event_type: str, secret: dict[str, Any]) -> None:
        reason = drifted(event_type, secret)
        labels = (secret.get("metadata") or {}).get("labels") or {}
        kind = labels.get(LABEL_OWNER_KIND)
        namespace, name = labels.get(LABEL_OWNER_NAMESPACE), labels.get(LABEL_OWNER_NAME)
        if reason is None or kind not in PLURALS or not namespace or not name:
            return
        meta = secret["metadata"]
        note = f"{format_time(_now())} Secret {meta['namespace']}/{meta['name']} {reason}"
        kube = self.runtime.kube
        try:
            await kube._call(
                kube.custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURALS[kind],
                name,
                {"metadata": {"annotations": {ANNOTATION_DRIFT: note}}},
            )
        except ApiException as exc:
            log.warning(
                "could not request repair of %s %s/%s: %s", kind, namespace, name, exc.reason
            )
            return
        log.info("drift: %s; asked %s %s/%s to reconcile", note, kind, namespace, name)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
