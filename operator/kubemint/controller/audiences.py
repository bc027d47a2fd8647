"""Audience-ownership records in the server namespace: read, write, and watch for changes.

The AccessRule handler decides (kubemint.api.audiences) and calls `Records.apply` to
make the live record match the decision; writes are optimistic (create fails if a record
appeared meanwhile, replace and delete are conditional on the resourceVersion read), so a
concurrent admin edit is never overwritten: the handler retries with what is there now.

`RecordWatcher` follows every change to a record, the operator's own and admins' alike, and
pokes each AccessRule naming that audience (an annotation, which runs the rule's normal kopf
handler), so every rule's status follows an ownership change within a moment. The watch is
namespaced and label-selected on the API server: kopf would stream all ConfigMaps of the
cluster and filter them itself.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from kubemint.api.accessrule import RuleClaim
from kubemint.api.audiences import (
    SELECTOR,
    AudienceOwnership,
    InvalidRecord,
    OwnerRecord,
    Record,
    audience_of,
    decode,
    encode,
    record_name,
)
from kubemint.api.meta import GROUP, VERSION
from kubemint.controller.kube import Kube

ANNOTATION_POKE = "kubemint.io/audience-ownership"  # value: the record's resourceVersion
log = logging.getLogger("kubemint.ownership")
Body = dict[str, Any]


class Records:
    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace

    async def read(self, audience: str) -> tuple[Record, Body | None]:
        live = await self.kube._call(
            self.kube.core.read_namespaced_config_map, record_name(audience), self.namespace
        )
        return (None if live is None else decode(live, audience)), live

    async def apply(
        self, current: Record, live: Body | None, decision: AudienceOwnership
    ) -> str | None:
        """Make the record match `decision`; what changed ("claimed", "moved", "released")."""
        wanted = decision.record
        if wanted == current or isinstance(wanted, InvalidRecord):
            return None
        if wanted is None:
            assert live is not None
            delete = functools.partial(
                self.kube.core.delete_namespaced_config_map,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(
                        resource_version=live["metadata"]["resourceVersion"]
                    )
                ),
            )
            await self._write(delete, live["metadata"]["name"], self.namespace)
            return "released"
        body = encode(wanted, self.namespace, await self._namespace_uid(wanted))
        if live is None:
            await self._write(self.kube.core.create_namespaced_config_map, self.namespace, body)
            return "claimed"
        body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        await self._write(
            self.kube.core.replace_namespaced_config_map,
            live["metadata"]["name"],
            self.namespace,
            body,
        )
        return "moved"

    async def _namespace_uid(self, record: OwnerRecord) -> str:
        namespace = await self.kube._call(self.kube.core.read_namespace, record.namespace)
        if namespace is None:
            raise kopf.TemporaryError(f"namespace {record.namespace} is gone", delay=1)
        uid: str = namespace["metadata"]["uid"]
        return uid

    async def _write(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            await self.kube._call(fn, *args)
        except ApiException as exc:
            if exc.status in (409, 422):  # changed meanwhile (422: failed precondition)
                raise kopf.TemporaryError("the ownership record changed; again", delay=0.5) from exc
            raise


class RecordWatcher:
    """Poke every rule of an audience whose record was created, changed or deleted."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        rules: Callable[[], Mapping[str, Iterable[RuleClaim]]],
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.rules = rules  # the live index audience → claims
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Body] = asyncio.Queue()
        halt = threading.Event()
        thread = threading.Thread(
            target=self._stream, args=(loop, queue, halt), name="ownership-watch", daemon=True
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
                await self.poke(getter.result())
        finally:
            halt.set()
            self._watch.stop()  # type: ignore[no-untyped-call]

    async def poke(self, record: Body) -> None:
        audience = audience_of(record)
        if audience is None:
            return  # not at the name of the audience it names: no audience's record
        version = record["metadata"].get("resourceVersion", "")
        patch = {"metadata": {"annotations": {ANNOTATION_POKE: version}}}
        for claim in list(self.rules().get(audience, ())):
            try:
                await self.kube._call(
                    self.kube.custom.patch_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    claim.namespace,
                    "accessrules",
                    claim.name,
                    patch,
                )
            except ApiException as exc:
                log.warning(
                    "could not ask AccessRule %s/%s to follow its audience's owner: %s",
                    claim.namespace,
                    claim.name,
                    exc.reason,
                )

    def _stream(
        self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Body], halt: threading.Event
    ) -> None:
        core = self.kube.core
        version: str | None = None
        relisted = False
        while not halt.is_set():
            try:
                if version is None:
                    listing = json.loads(
                        core.list_namespaced_config_map(
                            self.namespace, label_selector=SELECTOR, _preload_content=False
                        ).data  # type: ignore[attr-defined]
                    )
                    version = listing["metadata"]["resourceVersion"]
                    if relisted:  # changes may have been missed: every audience follows up
                        for item in listing.get("items", []):
                            loop.call_soon_threadsafe(queue.put_nowait, item)
                    relisted = True
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    core.list_namespaced_config_map,
                    self.namespace,
                    label_selector=SELECTOR,
                    resource_version=version,
                    timeout_seconds=30,
                    allow_watch_bookmarks=True,
                ):
                    raw = event["raw_object"]
                    version = raw["metadata"].get("resourceVersion", version)
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        loop.call_soon_threadsafe(queue.put_nowait, raw)
                    if halt.is_set():
                        return
            except ApiException as exc:
                if exc.status == 410:  # history compacted: start over from a fresh list
                    version = None
                    continue
                if halt.is_set():
                    return
                log.warning("ownership record watch failed (%s); retrying", exc.reason)
                halt.wait(2)
            except Exception as exc:  # the watch must outlive network hiccups
                if halt.is_set():
                    return
                log.warning("ownership record watch interrupted (%s); retrying", type(exc).__name__)
                halt.wait(2)
