"""The operator's only Kubernetes I/O: Secrets, custom objects, ServiceAccounts.

The official client is synchronous; calls run on a small thread pool. Writes are skipped when
the live object already matches (idempotence: a re-run handler changes nothing), and a
content hash annotation lets the Secret watcher tell our own writes from hand edits.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubemint.api.meta import (
    API_VERSION,
    GROUP,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    PLURALS,
    VERSION,
)
from kubemint.api.records import secret_text

ANNOTATION_DATA_HASH = "kubemint.io/data-hash"


def data_hash(data: Mapping[str, str]) -> str:
    """Digest of a Secret's data (not reversible; lets the watcher detect hand edits)."""
    canonical = json.dumps(dict(sorted(data.items())), separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:32]


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion", API_VERSION),
        "kind": body["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


Body = dict[str, Any]


def connect(connections: int) -> client.ApiClient:
    """An API client with at most `connections` pooled connections: in-cluster config when
    running in a pod, else the kubeconfig (KUBECONFIG)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


class AlreadyExists(Exception):
    """A Secret to be created exists: someone created it since it was read (or it was not
    read). The caller reads and decides again; nothing was overwritten."""


class Unread:
    """`live` not passed: read it. (None means the caller read it and it does not exist.)"""


UNREAD = Unread()


class Kube:
    def __init__(self, api_client: client.ApiClient, workers: int = 16) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")

    @classmethod
    def connect(cls, workers: int = 16) -> Kube:
        """In-cluster config when running in a pod, else the kubeconfig (KUBECONFIG)."""
        return cls(connect(workers + 4), workers)  # + the label watchers

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api_client.close()  # type: ignore[no-untyped-call]

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Body | None:
        """Call the API with raw JSON in and out; None on 404."""

        def call() -> Body | None:
            try:
                response = fn(*args, **kwargs, _preload_content=False)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            decoded_body: Body = json.loads(response.data)
            return decoded_body

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, call)

    # -- Secrets -----------------------------------------------------------------------------

    async def read_secret(self, namespace: str, name: str) -> Body | None:
        return await self._call(self.core.read_namespaced_secret, name, namespace)

    async def apply_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        labels: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
        owner: Mapping[str, Any] | None = None,
        live: Body | Unread | None = UNREAD,
    ) -> str:
        """Make a Secret hold exactly this data; returns "created", "updated" or "unchanged".

        Labels and annotations that others added (e.g. Reloader's) are kept.
        """
        want: Body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {**labels, LABEL_MANAGED_BY: MANAGED_BY},
                "annotations": {**(annotations or {}), ANNOTATION_DATA_HASH: data_hash(data)},
            },
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        if owner is not None:
            want["metadata"]["ownerReferences"] = [owner_reference(owner)]
        if isinstance(live, Unread):
            live = await self.read_secret(namespace, name)
        if live is None:
            # A 409 here means someone created it meanwhile: the caller's ownership check saw
            # nothing, so it must read and decide again instead of adopting (kopf retries a
            # handler that lets AlreadyExists out).
            try:
                await self._call(self.core.create_namespaced_secret, namespace, want)
            except ApiException as exc:
                if exc.status == 409:
                    raise AlreadyExists(f"Secret {namespace}/{name} already exists") from exc
                raise
            return "created"
        if _secret_matches(live, want):
            return "unchanged"
        live_meta = live["metadata"]
        meta = want["metadata"]
        meta["labels"] = {**(live_meta.get("labels") or {}), **meta["labels"]}
        meta["annotations"] = {**(live_meta.get("annotations") or {}), **meta["annotations"]}
        meta["resourceVersion"] = live_meta["resourceVersion"]
        await self._call(self.core.replace_namespaced_secret, name, namespace, want)
        return "updated"

    async def delete_secret(self, namespace: str, name: str, *, uid: str | None = None) -> bool:
        """Delete a Secret; with `uid`, only that very Secret (a precondition: if it was
        replaced since it was read, the API server refuses and nothing is deleted)."""
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        try:
            result = await self._call(
                self.core.delete_namespaced_secret, name, namespace, body=options
            )
        except ApiException as exc:
            if exc.status == 409:  # precondition failed: not the Secret we checked
                return False
            raise
        return result is not None

    # -- other objects -----------------------------------------------------------------------

    async def service_account_names(self, namespace: str) -> frozenset[str]:
        listing = await self._call(self.core.list_namespaced_service_account, namespace)
        return frozenset(sa["metadata"]["name"] for sa in (listing or {}).get("items", []))

    async def get_custom(self, kind: str, namespace: str, name: str) -> Body | None:
        return await self._call(
            self.custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURALS[kind],
            name,
        )

    async def patch_custom(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> None:
        """A JSON merge patch of a kubemint object (404 is an ApiException here)."""

        def call() -> None:
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[kind], name, dict(patch)
            )

        await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def patch_status(
        self, kind: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        await self._call(
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURALS[kind],
            name,
            {"status": dict(status)},
        )


def decoded(secret: Body | None) -> dict[str, str] | None:
    """A Secret's data as text (None when the Secret does not exist)."""
    return None if secret is None else secret_text(secret)


def _secret_matches(live: Body, want: Body) -> bool:
    live_meta, want_meta = live["metadata"], want["metadata"]
    live_labels = live_meta.get("labels") or {}
    live_annotations = live_meta.get("annotations") or {}
    return (
        (live.get("data") or {}) == want["data"]
        and all(live_labels.get(k) == v for k, v in want_meta["labels"].items())
        and all(live_annotations.get(k) == v for k, v in want_meta["annotations"].items())
        and _owner_uids(live_meta) == _owner_uids(want_meta)
    )


def _owner_uids(meta: Body) -> list[str]:
    return sorted(ref["uid"] for ref in meta.get("ownerReferences") or [])
