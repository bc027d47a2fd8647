"""The chart's MutatingAdmissionPolicy: a tenant's new OAuth2Client or ServiceAccount carries
the operator's finalizer from its creation (no operator PATCH needed), other kinds do not, and
the policy is rendered only where the API server serves the API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from kubemint.api.meta import FINALIZER
from kubemint.devcluster import ControlPlane
from tests.chart.conftest import CHART, RELEASE, documents, helm_run

pytestmark = pytest.mark.integration

MAP_API = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"


def rendered(helm: Path, tmp: Path, *extra: str) -> list[dict[str, Any]]:
    result = helm_run(helm, "template", RELEASE, str(CHART), *extra, values={}, tmp=tmp)
    assert result.returncode == 0, result.stderr
    return documents(result.stdout)


def created(cluster: ControlPlane, doc: dict[str, Any]) -> dict[str, Any]:
    out = cluster.kubectl("create", "-o", "json", "-f", "-", stdin=json.dumps(doc))
    body: dict[str, Any] = json.loads(out.stdout)
    return body


def test_new_clients_and_accounts_carry_the_finalizer_from_creation(
    helm: Path, cluster: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    policy, binding = [
        d
        for d in rendered(helm, tmp_path, "--api-versions", MAP_API)
        if d["kind"].startswith("MutatingAdmissionPolicy")
    ]
    # Cluster-scoped and the control plane is shared: this copy binds to the test's namespace.
    suffix = f"-{namespace}"
    policy["metadata"]["name"] += suffix
    binding["metadata"]["name"] += suffix
    binding["spec"]["policyName"] = policy["metadata"]["name"]
    binding["spec"]["matchResources"] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    }
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"kind": "List", "apiVersion": "v1", "items": [policy, binding]}),
    )
    made: list[tuple[str, str]] = []
    try:
        client = {
            "apiVersion": "kubemint.io/v1alpha1",
            "kind": "OAuth2Client",
            "metadata": {"name": "c", "namespace": namespace},
            "spec": {"audiences": ["https://api.example.com"]},
        }
        account = {
            "apiVersion": "kubemint.io/v1alpha1",
            "kind": "ServiceAccount",
            "metadata": {"name": "a", "namespace": namespace},
            "spec": {"clients": ["c"]},
        }
        rule = {
            "apiVersion": "kubemint.io/v1alpha1",
            "kind": "AccessRule",
            "metadata": {"name": "r", "namespace": namespace},
            "spec": {
                "audience": "https://api.example.com",
                "subjects": [{"kind": "OAuth2Client", "name": "c"}],
            },
        }
        # The policy takes effect once the API server has loaded it: poll with fresh names.
        for attempt in range(60):
            client["metadata"]["name"] = f"c{attempt}"
            body = created(cluster, client)
            made.append(("oauth2client", body["metadata"]["name"]))
            if FINALIZER in (body["metadata"].get("finalizers") or []):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the policy never set the finalizer on a new OAuth2Client")
        assert body["metadata"]["finalizers"] == [FINALIZER]
        body = created(cluster, account)
        made.append(("serviceaccounts.kubemint.io", "a"))
        assert body["metadata"]["finalizers"] == [FINALIZER]
        body = created(cluster, rule)
        assert not body["metadata"].get("finalizers")  # no delete handler: none needed
    finally:
        for name in (policy["metadata"]["name"],):
            cluster.kubectl(
                "delete", "mutatingadmissionpolicybinding", binding["metadata"]["name"], check=False
            )
            cluster.kubectl("delete", "mutatingadmissionpolicy", name, check=False)
        # No operator runs here: release the objects so the namespace can go.
        for kind, name in made:
            cluster.kubectl(
                "patch",
                kind,
                name,
                "-n",
                namespace,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )


def test_no_policy_where_the_api_is_missing_or_it_is_off(helm: Path, tmp_path: Path) -> None:
    kinds = {d["kind"] for d in rendered(helm, tmp_path)}
    assert "MutatingAdmissionPolicy" not in kinds
    off = helm_run(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--api-versions",
        MAP_API,
        "--set",
        "operator.finalizerPolicy=false",
        values={},
        tmp=tmp_path,
    )
    assert off.returncode == 0, off.stderr
    assert "MutatingAdmissionPolicy" not in {d["kind"] for d in documents(off.stdout)}
