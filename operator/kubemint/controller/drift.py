"""Drift repair: a Secret kubemint manages was deleted or edited by hand → its owner reconciles.

kopf filters labels on the client side, so watching Secrets through kopf would stream every
Secret in the cluster to the operator. This watch uses a server-side label selector instead.
A repair is requested by annotating the owning custom resource, which runs the owner's
normal kopf handler (with its indexes, lock, Events and status) like any other change.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from kubernetes.client.exceptions import ApiException

from kubemint.api.meta import LABEL_MANAGED_BY, MANAGED_BY, PLURALS, format_time
from kubemint.api.records import Owner, controller, decode_or_none, secret_text
from kubemint.controller.kube import ANNOTATION_DATA_HASH, data_hash
from kubemint.controller.runtime import Runtime
from kubemint.controller.watching import LabelWatch

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
        self._watch = LabelWatch(
            "secret",
            runtime.kube.core.list_secret_for_all_namespaces,
            selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}",
            events=("MODIFIED", "DELETED"),
            handle=self._repair,
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self._watch.run(stop)

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
