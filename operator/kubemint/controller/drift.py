"""Drift repair: a Secret kubemint manages was deleted or edited by hand → its owner reconciles.

kopf filters labels on the client side, so watching Secrets through kopf would stream every
Secret in the cluster to the operator. This watch uses a server-side label selector instead.
A repair is requested by annotating the owning custom resource, which runs the owner's
normal kopf handler (with its indexes, lock, Events and status) like any other change.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import threading
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from kubemint.api.meta import LABEL_MANAGED_BY, MANAGED_BY, PLURALS, format_time
from kubemint.api.records import Owner, controller, decode_or_none, secret_text
from kubemint.controller.kube import ANNOTATION_DATA_HASH, data_hash
from kubemint.controller.runtime import Runtime

ANNOTATION_DRIFT = "kubemint.io/drift-detected"
log = logging.getLogger("kubemint.drift")


def drifted(event_type: str, secret: dict[str, Any]) -> str | None:
    """Why this watch event means drift (None when it is our own write or untouched)."""
    meta = secret.get("metadata") or {}
    if event_type == "DELETED":
        return "deleted"
    if (meta.get("annotations") or {}).get(ANNOTATION_DATA_HASH) != data_hash(secret_text(secret)):
        return "edited"
    return None


def owner_of(secret: dict[str, Any], server_namespace: str) -> Owner | None:
    """The kubemint object a Secret belongs to, from facts its writer alone controls, never
    from labels (anyone may label their own Secret "managed by kubemint"): a verification
    record in the server namespace names its owner in its JSON (only kubemint and admins write
    there); any other Secret belongs to the object its controller ownerReference names, which
    Kubernetes confines to the Secret's own namespace, so a tenant can point only at its own."""
    meta = secret.get("metadata") or {}
    if meta.get("namespace") == server_namespace:
        record = decode_or_none(secret)
        if record is not None:
            return record.owner
    owner = controller(secret)
    return owner if owner is not None and owner.kind in PLURALS else None


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
        owner = owner_of(secret, self.runtime.settings.namespace)
        if reason is None or owner is None:
            return
        meta = secret["metadata"]
        note = f"{format_time(_now())} Secret {meta['namespace']}/{meta['name']} {reason}"
        kube = self.runtime.kube
        try:
            # The uid makes the patch a precondition: it fails unless the object is the very
            # one the Secret was written for (not a namesake created since).
            await kube.patch_custom(
                owner.kind,
                owner.namespace,
                owner.name,
                {"metadata": {"uid": owner.uid, "annotations": {ANNOTATION_DRIFT: note}}},
            )
        except ApiException as exc:
            log.warning("could not request repair of %s: %s", owner, exc.reason)
            return
        log.info("drift: %s; asked %s to reconcile", note, owner)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
