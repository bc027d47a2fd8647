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
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf
from kubernetes import client
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
from kubemint.controller.watching import LabelWatch

ANNOTATION_POKE = "kubemint.io/audience-ownership"  # value: the record's resourceVersion
log = logging.getLogger("kubemint.ownership")
Body = dict[str, Any]


class Records:
    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        # audience → (resourceVersion, rule) of the record version a rule's reconcile wrote:
        # that rule's status already follows that version, so the watcher need not poke it
        # (a poke is a PATCH, a watch event and a reconcile that rewrites the status).
        self._written: dict[str, tuple[str, tuple[str, str]]] = {}

    def up_to_date(self, audience: str, version: str) -> tuple[str, str] | None:
        """The rule (namespace, name) that wrote this version of the audience's record, if
        one did (asked once per version, by the watcher)."""
        written = self._written.get(audience)
        if written is None or written[0] != version:
            return None
        del self._written[audience]
        return written[1]

    async def read(self, audience: str) -> tuple[Record, Body | None]:
        live = await self.kube._call(
            self.kube.core.read_namespaced_config_map, record_name(audience), self.namespace
        )
        return (None if live is None else decode(live, audience)), live

    async def apply(
        self,
        current: Record,
        live: Body | None,
        decision: AudienceOwnership,
        by: tuple[str, str] | None = None,
    ) -> str | None:
        """Make the record match `decision`; what changed ("claimed", "moved", "released").
        `by`: the rule (namespace, name) whose reconcile decided, and whose status will say so."""
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
            written = await self._write(
                self.kube.core.create_namespaced_config_map, self.namespace, body
            )
            self._remember(wanted.audience, written, by)
            return "claimed"
        body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        written = await self._write(
            self.kube.core.replace_namespaced_config_map,
            live["metadata"]["name"],
            self.namespace,
            body,
        )
        self._remember(wanted.audience, written, by)
        return "moved"

    def _remember(self, audience: str, written: Body | None, by: tuple[str, str] | None) -> None:
        version = ((written or {}).get("metadata") or {}).get("resourceVersion")
        if by is not None and version:
            self._written[audience] = (version, by)

    async def _namespace_uid(self, record: OwnerRecord) -> str:
        namespace = await self.kube._call(self.kube.core.read_namespace, record.namespace)
        if namespace is None:
            raise kopf.TemporaryError(f"namespace {record.namespace} is gone", delay=1)
        uid: str = namespace["metadata"]["uid"]
        return uid

    async def _write(self, fn: Callable[..., Any], *args: Any) -> Body | None:
        try:
            return await self.kube._call(fn, *args)
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
        written_by: Callable[[str, str], tuple[str, str] | None] = lambda _a, _v: None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.rules = rules  # the live index audience → claims
        self.written_by = written_by  # the rule that wrote (audience, version), if one did
        self._watch = LabelWatch(
            "ownership record",
            kube.core.list_namespaced_config_map,
            namespace,
            selector=SELECTOR,
            events=("ADDED", "MODIFIED", "DELETED"),
            handle=lambda _, record: self.poke(record),
            replay_on_relist=True,  # changes may have been missed: every audience follows up
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self._watch.run(stop)

    async def poke(self, record: Body) -> None:
        audience = audience_of(record)
        if audience is None:
            return  # not at the name of the audience it names: no audience's record
        version = record["metadata"].get("resourceVersion", "")
        patch = {"metadata": {"annotations": {ANNOTATION_POKE: version}}}
        writer = self.written_by(audience, version)
        for claim in list(self.rules().get(audience, ())):
            if (claim.namespace, claim.name) == writer:
                continue  # its own reconcile wrote this version: its status follows it
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
