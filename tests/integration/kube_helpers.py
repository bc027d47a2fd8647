"""Small helpers for tests that read and write objects on the real API server."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
from collections.abc import Callable
from typing import Any, TypeVar

from kubemint.api.records import record_name
from kubemint.devcluster import ControlPlane

T = TypeVar("T")
API = "/apis/kubemint.io/v1alpha1"
PLURALS = {
    "OAuth2Client": "oauth2clients",
    "ServiceAccount": "serviceaccounts",
    "SigningKey": "signingkeys",
    "AccessRule": "accessrules",
    "TrustedIssuer": "trustedissuers",
}


def apply(cluster: ControlPlane, *objects: dict[str, Any]) -> None:
    for obj in objects:
        cluster.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(obj))


def custom(kind: str, name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubemint.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def get(cluster: ControlPlane, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = cluster.get_json(
            f"{API}/namespaces/{namespace}/{PLURALS[kind]}/{name}"
        )
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return obj


def secret(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = cluster.get_json(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return obj


def secret_data(cluster: ControlPlane, namespace: str, name: str) -> dict[str, str] | None:
    obj = secret(cluster, namespace, name)
    if obj is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}


def condition(obj: dict[str, Any] | None, kind: str = "Ready") -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll until `probe` returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def wait_ready(
    cluster: ControlPlane,
    kind: str,
    namespace: str,
    name: str,
    status: str = "True",
    reason: str | None = None,
) -> dict[str, Any]:
    """Poll until Ready is `status` for the current generation (and, when given, has
    `reason`: a dependent object may be reconciled before what it needs is indexed, and
    then says so first, e.g. ClientNotFound)."""

    def probe() -> dict[str, Any] | None:
        obj = get(cluster, kind, namespace, name)
        current = condition(obj)
        generation = (obj or {}).get("metadata", {}).get("generation")
        if (
            current.get("status") == status
            and current.get("observedGeneration") == generation
            and reason in (None, current.get("reason"))
        ):
            return obj
        return None

    return wait_for(probe, f"{kind} {namespace}/{name} Ready={status} {reason or ''}".strip())


def record_name_of(cluster: ControlPlane, kind: str, namespace: str, name: str) -> str:
    """The verification record's Secret name for an object (named after its uid)."""
    obj = get(cluster, kind, namespace, name)
    assert obj is not None, f"{kind} {namespace}/{name} does not exist"
    return record_name(kind, obj["metadata"]["uid"])


def record(
    cluster: ControlPlane, server_ns: str, kind: str, namespace: str, name: str
) -> dict[str, Any] | None:
    """The decoded JSON of an object's verification record (None while it has none)."""
    data = secret_data(cluster, server_ns, record_name_of(cluster, kind, namespace, name))
    if data is None:
        return None
    field = next(iter(data))
    parsed: dict[str, Any] = json.loads(data[field])
    return parsed
