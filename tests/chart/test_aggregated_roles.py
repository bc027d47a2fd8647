"""rbac.aggregateToDefaultRoles, for real: after `helm install`, the API server's RBAC (with the
controller manager's ClusterRole aggregation) lets a user bound to the built-in `edit` role in
a namespace create OAuth2Clients there, and one bound to `view` read but not write them (nor
read Secrets); neither reaches another namespace."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kubemint.devcluster import ControlPlane
from tests.chart.conftest import CHART, CLUSTER_HAS_CRDS, helm_run

pytestmark = pytest.mark.integration


def _can(cluster: ControlPlane, user: str, verb: str, resource: str, namespace: str) -> bool:
    result = cluster.kubectl(
        "auth", "can-i", verb, resource, "-n", namespace, "--as", user, check=False
    )
    return result.stdout.strip() == "yes"


def test_view_and_edit_users_manage_their_own_kubemint_objects(
    helm: Path, cluster: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    release = f"kubemint-{namespace[-6:]}"
    # Before the chart: the built-in roles know nothing of kubemint.io.
    cluster.kubectl(
        "create", "rolebinding", "dev-edit", "--clusterrole=edit", "--user=dev", "-n", namespace
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "auditor-view",
        "--clusterrole=view",
        "--user=auditor",
        "-n",
        namespace,
    )
    assert not _can(cluster, "dev", "create", "oauth2clients.kubemint.io", namespace)

    installed = helm_run(
        helm, "install", release, str(CHART), "--namespace", namespace,
        "--kubeconfig", str(cluster.kubeconfig), values=CLUSTER_HAS_CRDS, tmp=tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    try:
        deadline = time.monotonic() + 60  # the aggregation controller's turn
        while not _can(cluster, "dev", "create", "oauth2clients.kubemint.io", namespace):
            assert time.monotonic() < deadline, "edit never gained kubemint.io"
            time.sleep(0.5)
        for kind in (
            "oauth2clients",
            "serviceaccounts",
            "accessrules",
            "signingkeys",
            "trustedissuers",
        ):
            resource = f"{kind}.kubemint.io"
            assert _can(cluster, "dev", "delete", resource, namespace)
            assert _can(cluster, "auditor", "list", resource, namespace)
            assert not _can(cluster, "auditor", "create", resource, namespace)
            assert not _can(cluster, "auditor", "patch", resource, namespace)
            assert not _can(cluster, "dev", "list", resource, "default")  # only where bound
        assert not _can(cluster, "auditor", "get", "secrets", namespace)
        # A real write as the edit user, through admission.
        created = cluster.kubectl(
            "apply", "--as", "dev", "-n", namespace, "-f", "-",
            stdin="apiVersion: kubemint.io/v1alpha1\nkind: OAuth2Client\nmetadata:\n"
            "  name: app\nspec:\n  grantTypes: [client_credentials]\n  scopes: [read]\n"
            "  audiences: [https://api.example.com]\n",
            check=False,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
    finally:
        helm_run(
            helm, "uninstall", release, "--namespace", namespace,
            "--kubeconfig", str(cluster.kubeconfig), tmp=tmp_path,
        )  # fmt: skip
