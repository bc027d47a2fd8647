"""The chart's SigningKey (`signingKey.*` values), kept by the leader with server-side apply.

The chart renders what it wants into KUBEMINT_DEFAULT_SIGNING_KEY instead of a SigningKey
object, because its CRDs are templates of the same release (so `helm upgrade` upgrades them)
and helm maps every object of a release before it creates any: a SigningKey in the release
would fail the first install ("no matches for kind SigningKey"). The operator applies it under
its own field manager, forcing only the fields the chart sets: a values change (which rolls the
operator's pods, the env being part of their spec) reaches the object as `helm upgrade` would,
and nothing else on the object is touched. `signingKey.keep: false` is an ownerReference to
the operator's Deployment, so the garbage collector deletes the key (and its Secret) after the
release is uninstalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubemint.api.meta import API_VERSION, GROUP, PLURALS, VERSION
from kubemint.config import DefaultSigningKey
from kubemint.controller.kube import Kube

log = logging.getLogger("kubemint.operator")

FIELD_MANAGER = "kubemint-chart"


def desired(key: DefaultSigningKey, namespace: str, owner_uid: str | None) -> dict[str, Any]:
    """The apply configuration: only what the chart decides (name, labels, spec, owner)."""
    metadata: dict[str, Any] = {
        "name": key.name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "kubemint"},
    }
    if key.owner and owner_uid:
        metadata["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": key.owner, "uid": owner_uid}
        ]
    return {
        "apiVersion": API_VERSION,
        "kind": "SigningKey",
        "metadata": metadata,
        "spec": dict(key.spec),
    }


def apply(kube: Kube, key: DefaultSigningKey, namespace: str) -> None:
    """One attempt (blocking): read the owner's uid if needed, then apply."""
    owner_uid = None
    if key.owner:
        apps = client.AppsV1Api(kube.api_client)
        owner_uid = apps.read_namespaced_deployment(key.owner, namespace).metadata.uid  # type: ignore[union-attr]
    kube.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURALS["SigningKey"],
        key.name,
        json.loads(json.dumps(desired(key, namespace, owner_uid))),
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type="application/apply-patch+yaml",
    )


async def keep_default_signing_key(
    kube: Kube, key: DefaultSigningKey, namespace: str, stop: asyncio.Event
) -> None:
    """Apply `key` once, retrying with backoff (up to a minute apart) until it is accepted or
    `stop` is set. A refusal (a values mistake the CRD rejects) is logged with the API
    server's message each time; it never stops the operator's other work."""
    delay = 1.0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            await loop.run_in_executor(None, apply, kube, key, namespace)
        except ApiException as exc:
            log.warning(
                "cannot apply the chart's SigningKey %s/%s (HTTP %s): %s; retrying in %.0fs",
                namespace, key.name, exc.status, _reason(exc), delay,
            )  # fmt: skip
        except Exception as exc:  # a lost connection, a timeout: retried like a refusal
            log.warning(
                "cannot apply the chart's SigningKey %s/%s: %s; retrying in %.0fs",
                namespace, key.name, exc, delay,
            )  # fmt: skip
        else:
            log.info("applied the chart's SigningKey %s/%s", namespace, key.name)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 60.0)


def _reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)
