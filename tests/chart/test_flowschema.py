"""The chart's FlowSchema puts the operator's Lease requests in the `leader-election` priority
level: the API server classifies a Lease GET by the operator's ServiceAccount with it (its
Priority and Fairness response header names the FlowSchema), and nothing else of the
operator's, nor anyone else's Lease requests."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path

import pytest

from kubemint.devcluster import ControlPlane
from tests.chart.conftest import RELEASE, documents, render

pytestmark = pytest.mark.integration

PF_HEADER = "X-Kubernetes-PF-FlowSchema-UID"


def flow_schema_uid(cluster: ControlPlane, path: str, user: str) -> str | None:
    """Which FlowSchema the API server classified a GET of `path` as `user` with."""
    assert cluster.pki is not None
    context = ssl.create_default_context(cafile=str(cluster.pki.ca.cert))
    context.load_cert_chain(str(cluster.pki.admin.cert), str(cluster.pki.admin.key))
    connection = http.client.HTTPSConnection("127.0.0.1", cluster.api_port, context=context)
    try:
        connection.request("GET", path, headers={"Impersonate-User": user})
        response = connection.getresponse()
        response.read()  # 403 or 404 for these identities: classification comes first
        return response.getheader(PF_HEADER)
    finally:
        connection.close()


def test_the_operators_lease_requests_go_to_leader_election(
    helm: Path, cluster: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    manifest = render(helm, {}, tmp_path, where=namespace)
    (schema,) = [d for d in documents(manifest) if d["kind"] == "FlowSchema"]
    assert schema["spec"]["priorityLevelConfiguration"]["name"] == "leader-election"
    schema["metadata"]["name"] += f"-{namespace}"  # cluster-scoped: one per test namespace
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(schema))
    try:
        created = cluster.kubectl("get", "flowschema", schema["metadata"]["name"], "-o", "json")
        uid = json.loads(created.stdout)["metadata"]["uid"]
        operator = f"system:serviceaccount:{namespace}:{RELEASE}-operator"
        lease = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/kubemint-operator"
        assert flow_schema_uid(cluster, lease, operator) == uid
        # Its other requests, and another identity's Lease requests, are classified as before.
        secrets = f"/api/v1/namespaces/{namespace}/secrets"
        assert flow_schema_uid(cluster, secrets, operator) not in (None, uid)
        other = f"system:serviceaccount:{namespace}:someone-else"
        assert flow_schema_uid(cluster, lease, other) not in (None, uid)
    finally:
        cluster.kubectl("delete", "flowschema", schema["metadata"]["name"], check=False)


def test_no_flow_schema_without_leader_election(helm: Path, tmp_path: Path) -> None:
    for values in (
        {"operator": {"leaderElection": {"flowSchema": False}}},
        {"operator": {"leaderElection": {"enabled": False}}},
    ):
        kinds = {d["kind"] for d in documents(render(helm, values, tmp_path))}
        assert "FlowSchema" not in kinds
