"""The chart's RBAC is enough for the token server, and no more: installed for real, the
token server's own ServiceAccount runs every watch of the token server's view to sync
(the four kinds, Secrets and revocation ConfigMaps in its namespace, Kubernetes
ServiceAccounts cluster-wide, metadata only) and reads the cluster's issuer keys, but cannot
get a ServiceAccount, mint its tokens, or read Secrets elsewhere.

The integration tests run the token server with an admin kubeconfig; this test is what
proves the chart grants what a new watch needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client

from kubemint.devcluster import ControlPlane
from kubemint.store.issuers import kubernetes_fetch
from kubemint.store.view import ClusterView
from tests.chart.conftest import CHART, CLUSTER_HAS_CRDS, helm_run

pytestmark = pytest.mark.integration


def _api_client(cluster: ControlPlane, token: str) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = cluster.server
    configuration.ssl_ca_cert = str(cluster.ca_file)
    configuration.api_key = {"BearerToken": token, "authorization": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer", "authorization": "Bearer"}
    return client.ApiClient(configuration)


def test_the_token_server_s_service_account_can_run_its_view_and_nothing_more(
    helm: Path, cluster: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    release = f"kubemint-{namespace[-6:]}"  # cluster-scoped RBAC names unique per test
    common = ["--namespace", namespace, "--kubeconfig", str(cluster.kubeconfig)]
    installed = helm_run(
        helm, "install", release, str(CHART), *common,
        values={"issuer": "https://auth.example.com", **CLUSTER_HAS_CRDS}, tmp=tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    try:
        accounts = json.loads(
            cluster.kubectl(
                "get", "serviceaccounts", "-n", namespace, "-o", "json",
                "-l", "app.kubernetes.io/component=token-server",
            ).stdout
        )["items"]  # fmt: skip
        assert len(accounts) == 1
        name = accounts[0]["metadata"]["name"]
        token = cluster.kubectl("create", "token", name, "-n", namespace).stdout.strip()
        api = _api_client(cluster, token)

        view = ClusterView(api, namespace)
        view.start()
        try:
            synced = view.wait_synced(timeout=30)
            unsynced = [n for n, i in view._informers.items() if not i.synced.is_set()]
            assert synced, f"the chart's RBAC does not let these watches list: {unsynced}"
        finally:
            view.stop()
        issuer, jwks = kubernetes_fetch(api)()
        assert issuer == cluster.issuer
        assert jwks["keys"]

        who = f"--as=system:serviceaccount:{namespace}:{name}"

        def can(*args: str) -> bool:
            result = cluster.kubectl("auth", "can-i", who, *args, check=False)
            return result.stdout.strip() == "yes"

        assert can("watch", "serviceaccounts", "--all-namespaces")
        # The revocation store: per-token entries, expired ones deleted by label.
        for verb in ("create", "patch", "deletecollection"):
            assert can(verb, "configmaps", "-n", namespace), verb
        assert not can("deletecollection", "configmaps", "-n", "default")
        assert not can("get", "serviceaccounts", "-n", "default")
        assert not can("create", "serviceaccounts/token", "-n", "default")
        assert not can("list", "pods", "--all-namespaces")
        assert not can("list", "secrets", "-n", "default")
    finally:
        helm_run(helm, "uninstall", release, *common, tmp=tmp_path)
