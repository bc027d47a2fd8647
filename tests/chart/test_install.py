"""A real `helm install`, `upgrade` and `uninstall` against the test API server: the objects
are created (RBAC included), upgraded, and removed again, except the SigningKey the chart
keeps. No pod runs (the control plane has no nodes and the image is not built here), so this
proves what the API server and helm accept, not the pods' behaviour. The session's cluster has
the CRDs already, not owned by any release: these releases leave them alone (crds.enabled
false); tests/chart/test_crd_upgrade.py installs them with the chart on a cluster of its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubemint.config import DEFAULT_SIGNING_KEY_ENV, DefaultSigningKey
from kubemint.devcluster import ControlPlane
from tests.chart.conftest import CHART, CLUSTER_HAS_CRDS, VALUE_SETS, helm_run

pytestmark = pytest.mark.integration


def _names(cluster: ControlPlane, kind: str, namespace: str | None, release: str) -> set[str]:
    where = ["-n", namespace] if namespace else []
    result = cluster.kubectl(
        "get", kind, *where, "-l", f"app.kubernetes.io/instance={release}", "-o", "json"
    )
    return {item["metadata"]["name"] for item in json.loads(result.stdout)["items"]}


def test_install_upgrade_and_uninstall(
    helm: Path, cluster: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    release = f"kubemint-{namespace[-6:]}"  # cluster-scoped RBAC names unique per test
    common = ["--namespace", namespace, "--kubeconfig", str(cluster.kubeconfig)]

    def run(*args: str, values: dict[str, Any] | None = None) -> str:
        result = helm_run(helm, *args, *common, values=values, tmp=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run(
        "install",
        release,
        str(CHART),
        values={"issuer": "https://auth.example.com", **CLUSTER_HAS_CRDS},
    )
    deployments = _names(cluster, "deployments", namespace, release)
    assert deployments == {f"{release}-operator", f"{release}-token-server"}
    assert f"{release}-token-server" in _names(cluster, "services", namespace, release)
    assert _names(cluster, "clusterroles", None, release) >= {
        f"{release}-operator",
        f"{release}-token-server",
    }
    # The chart's SigningKey is the operator's to apply (no operator runs here: see
    # tests/integration/test_default_signing_key.py); what the chart hands it must parse.
    operator = json.loads(
        cluster.kubectl(
            "get", "deployment", f"{release}-operator", "-n", namespace, "-o", "json"
        ).stdout
    )  # fmt: skip
    env = {
        e["name"]: e.get("value", "")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    key = DefaultSigningKey.from_env(env)
    assert DEFAULT_SIGNING_KEY_ENV in env
    assert key is not None
    assert (key.name, key.spec["algorithm"], key.owner) == ("default", "ES256", "")

    run("upgrade", release, str(CHART), "--reuse-values", values=VALUE_SETS["ha"])
    assert f"{release}-token-server" in _names(
        cluster, "horizontalpodautoscalers", namespace, release
    )
    status = json.loads(run("status", release, "-o", "json"))
    assert (status["version"], status["info"]["status"]) == (2, "deployed")

    run("uninstall", release, "--wait")
    assert _names(cluster, "deployments", namespace, release) == set()
    assert _names(cluster, "clusterroles", None, release) == set()
