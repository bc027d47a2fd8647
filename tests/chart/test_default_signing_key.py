"""The chart's SigningKey (`signingKey.*`) reaches the cluster through the operator: what
`helm template` renders into the operator's KUBEMINT_DEFAULT_SIGNING_KEY, given to a real
`kubemint operator`, becomes a Ready SigningKey; a values change updates it without new keys
and without touching what others wrote on it; `signingKey.keep: false` makes the operator's
Deployment its owner, so the garbage collector deletes it with the release."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubemint.config import DEFAULT_SIGNING_KEY_ENV
from kubemint.devcluster import ControlPlane
from kubemint.devcluster.components import operator_process, wait_for_leader
from tests.chart.conftest import documents, render

pytestmark = pytest.mark.integration

LEASE = "kubemint-operator"


@pytest.fixture
def server_namespace(cluster: ControlPlane) -> Iterator[str]:
    name = f"kms-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _chart_env(helm: Path, values: dict[str, Any], namespace: str, tmp: Path) -> str:
    """The operator Deployment's KUBEMINT_DEFAULT_SIGNING_KEY as the chart renders it."""
    (deployment,) = [
        doc
        for doc in documents(render(helm, values, tmp, where=namespace))
        if doc["kind"] == "Deployment" and doc["metadata"]["name"].endswith("-operator")
    ]
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    (value,) = [e["value"] for e in env if e["name"] == DEFAULT_SIGNING_KEY_ENV]
    return str(value)


def _key(cluster: ControlPlane, namespace: str) -> dict[str, Any] | None:
    got = cluster.kubectl(
        "get", "signingkey", "default", "-n", namespace, "-o", "json", check=False
    )
    return json.loads(got.stdout) if got.returncode == 0 else None


def _wait(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _ready(body: dict[str, Any] | None) -> bool:
    conditions = (body or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _run_operator(
    cluster: ControlPlane,
    namespace: str,
    env: str,
    logs: Path,
    check: Callable[[], Any],
    then: Callable[[Any], None] = lambda _: None,
) -> Any:
    """Run an operator with the chart's env until `check` holds, then `then(result)` while it
    still runs; returns what `check` returned."""
    process = operator_process(
        cluster, namespace=namespace, issuer="https://kubemint.test", name="op",
        lease_name=LEASE, log_dir=logs, extra_env={DEFAULT_SIGNING_KEY_ENV: env},
    )  # fmt: skip
    process.start()
    try:
        wait_for_leader(cluster, namespace, LEASE, "op")
        result = _wait("the chart's SigningKey", check)
        then(result)
        return result
    finally:
        process.stop()


def test_the_chart_s_signing_key_is_applied_updated_and_kept(
    helm: Path, cluster: ControlPlane, server_namespace: str, tmp_path: Path
) -> None:
    ns = server_namespace
    env = _chart_env(helm, {}, ns, tmp_path)
    first = _run_operator(
        cluster, ns, env, tmp_path, lambda: (k := _key(cluster, ns)) and _ready(k) and k
    )
    assert first["spec"]["algorithm"] == "ES256"
    assert first["spec"]["rotation"]["every"] == "720h"
    assert "ownerReferences" not in first["metadata"]  # keep: true
    cluster.kubectl("label", "signingkey", "default", "-n", ns, "team=platform")

    changed = _chart_env(helm, {"signingKey": {"rotation": {"every": "360h"}}}, ns, tmp_path)
    rotation_at = first["status"]["nextRotationAt"]

    def reconciled() -> dict[str, Any] | None:  # the operator has acted on the new spec
        key = _key(cluster, ns)
        updated = key and key["spec"]["rotation"]["every"] == "360h"
        return key if updated and key["status"]["nextRotationAt"] != rotation_at else None

    second = _run_operator(cluster, ns, changed, tmp_path, reconciled)
    assert second["metadata"]["labels"]["team"] == "platform"  # others' fields stay
    assert second["metadata"]["uid"] == first["metadata"]["uid"]  # updated, not re-created
    assert second["status"]["active"]["kid"] == first["status"]["active"]["kid"]  # same keys


def test_keep_false_gives_the_key_to_the_operator_s_deployment(
    helm: Path, cluster: ControlPlane, server_namespace: str, tmp_path: Path
) -> None:
    ns = server_namespace
    values = {"signingKey": {"keep": False}}
    env = _chart_env(helm, values, ns, tmp_path)
    owner = json.loads(env)["owner"]
    # The operator's Deployment as the release would have it (no node here: it never runs).
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": owner, "namespace": ns},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "op"}},
            "template": {
                "metadata": {"labels": {"app": "op"}},
                "spec": {"containers": [{"name": "op", "image": "kubemint/kubemint:0.1.0"}]},
            },
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(deployment))
    uid = json.loads(
        cluster.kubectl("get", "deployment", owner, "-n", ns, "-o", "json").stdout
    )["metadata"]["uid"]  # fmt: skip

    def uninstalled(key: dict[str, Any]) -> None:
        # What `helm uninstall` does. The GC deletes the key while the operator's pods are
        # still terminating (their ReplicaSet goes after the Deployment), and the operator
        # releases its finalizer; the chart README says what to do if it is gone already.
        cluster.kubectl("delete", "deployment", owner, "-n", ns)
        _wait("the garbage collector to delete the SigningKey", lambda: _key(cluster, ns) is None)

    key = _run_operator(
        cluster, ns, env, tmp_path,
        lambda: (k := _key(cluster, ns)) and k["metadata"].get("ownerReferences") and k,
        then=uninstalled,
    )  # fmt: skip
    assert key["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner, "uid": uid}
    ]
