"""Two operator replicas never both act; a restarted operator converges without duplicates."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest

from kubemint.controller.runtime import RECONCILE_SLOTS
from kubemint.devcluster import ControlPlane
from kubemint.devcluster.components import wait_for_leader
from tests.integration.conftest import SIGNING_KEY, start_operator
from tests.integration.kube_helpers import (
    apply,
    condition,
    custom,
    record_name_of,
    wait_for,
    wait_ready,
)

LEASE = "kubemint-operator"


@pytest.fixture
def server_namespace(cluster: ControlPlane) -> str:
    name = f"kms-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("apply", "-f", "-", stdin=SIGNING_KEY.format(namespace=name))
    return name


def _clients(namespace: str, count: int, prefix: str) -> list[dict[str, object]]:
    return [
        custom("OAuth2Client", f"{prefix}{i}", namespace, audiences=["https://api.test"])
        for i in range(count)
    ]


def _ready_count(cluster: ControlPlane, namespace: str) -> int:
    listing = cluster.get_json(f"/apis/kubemint.io/v1alpha1/namespaces/{namespace}/oauth2clients")
    return sum(condition(item).get("status") == "True" for item in listing["items"])


def _secrets(cluster: ControlPlane, namespace: str, role: str, owner_namespace: str) -> list[str]:
    """Managed Secrets of one role for clients of one namespace (a cluster-wide operator also
    writes records for other tests' clients whose namespaces are still terminating)."""
    selector = f"kubemint.io/role%3D{role},kubemint.io/owner-namespace%3D{owner_namespace}"
    listing = cluster.get_json(f"/api/v1/namespaces/{namespace}/secrets?labelSelector={selector}")
    return sorted(item["metadata"]["name"] for item in listing["items"])


def _acted(log: Path) -> bool:
    """Whether an operator ran any handler (only the leader may)."""
    return "Handler 'oauth2_client' succeeded" in log.read_text(errors="replace")


def test_only_the_leader_acts_and_a_standby_takes_over(
    cluster: ControlPlane, server_namespace: str, namespace: str, tmp_path: Path
) -> None:
    first = start_operator(cluster, server_namespace, "alpha", LEASE, tmp_path)
    second = None
    try:
        wait_for_leader(cluster, server_namespace, LEASE, "alpha")
        second = start_operator(cluster, server_namespace, "beta", LEASE, tmp_path)
        apply(cluster, *_clients(namespace, 3, "ha"))
        wait_for(lambda: _ready_count(cluster, namespace) == 3, "the leader to reconcile")
        assert _acted(first.log_path)
        assert not _acted(second.log_path), "the standby reconciled while not leading"

        first.stop()  # a clean stop releases the Lease at once
        wait_for_leader(cluster, server_namespace, LEASE, "beta", timeout=20)
        apply(cluster, *_clients(namespace, 1, "after"))
        wait_ready(cluster, "OAuth2Client", namespace, "after0")
        assert _acted(second.log_path)
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_an_operator_killed_mid_way_converges_without_duplicates(
    cluster: ControlPlane, server_namespace: str, namespace: str, tmp_path: Path
) -> None:
    count = 30
    apply(cluster, *_clients(namespace, count, "bulk"))
    first = start_operator(cluster, server_namespace, "crash", LEASE, tmp_path)
    try:
        wait_for(lambda: _ready_count(cluster, namespace) > 0, "some progress", timeout=60)
        first.kill()  # SIGKILL: no chance to finish handlers or release the Lease
    finally:
        first.stop()
    restarted = start_operator(cluster, server_namespace, "again", LEASE, tmp_path)
    try:
        # The killed replica never released its Lease: the new one waits for it to expire.
        wait_for(lambda: _ready_count(cluster, namespace) == count, "all clients Ready", timeout=90)
        credentials = _secrets(cluster, namespace, "client-credentials", namespace)
        records = _secrets(cluster, server_namespace, "client-verification", namespace)
        assert credentials == sorted(f"bulk{i}-credentials" for i in range(count))
        names = [
            record_name_of(cluster, "OAuth2Client", namespace, f"bulk{i}") for i in range(count)
        ]
        assert records == sorted(names)
        for name in names:  # each record verifies exactly the mounted secret
            record = cluster.get_json(f"/api/v1/namespaces/{server_namespace}/secrets/{name}")
            assert len(json.loads(_b64(record["data"]["client.json"]))["secrets"]) == 1
    finally:
        restarted.stop()


def test_an_operator_starting_with_more_objects_than_it_reconciles_at_once_handles_all(
    cluster: ControlPlane, server_namespace: str, namespace: str, tmp_path: Path
) -> None:
    """A restart (or a re-won lease) finds many existing objects. kopf handles none until all
    are indexed; with a worker limit below their number (it was 64) the objects past it got
    no worker to index them and the operator handled nothing, forever."""
    count = RECONCILE_SLOTS + 36
    items = _clients(namespace, count, "many")
    cluster.kubectl(
        "apply",
        "--server-side",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        timeout=120,
    )
    started = start_operator(cluster, server_namespace, "many", LEASE, tmp_path)
    try:
        wait_for(
            lambda: _ready_count(cluster, namespace) == count, "all clients Ready", timeout=150
        )
        records = _secrets(cluster, server_namespace, "client-verification", namespace)
        assert len(records) == count
    finally:
        started.stop()


def _b64(value: str) -> str:
    return base64.b64decode(value).decode()
