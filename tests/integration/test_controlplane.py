"""The test control plane itself: TokenRequest, OIDC discovery, garbage collection, versions."""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet

from kubemint.devcluster import ControlPlane
from kubemint.devcluster.binaries import read_versions
from kubemint.devcluster.layout import envtest_module_dir


def _anonymous_get(cluster: ControlPlane, url: str) -> Any:
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    with urllib.request.urlopen(url, context=context, timeout=10) as response:  # noqa: S310
        return json.load(response)


def _wait_until_gone(cluster: ControlPlane, *args: str, timeout: float = 60) -> float:
    begin = time.monotonic()
    while time.monotonic() - begin < timeout:
        if cluster.kubectl("get", *args, check=False).returncode != 0:
            return time.monotonic() - begin
        time.sleep(0.5)
    raise AssertionError(f"{args} still exists after {timeout}s")


def test_the_api_server_runs_the_pinned_kubernetes_version(cluster: ControlPlane) -> None:
    version = cluster.get_json("/version")
    pinned = read_versions(envtest_module_dir() / "go.mod")
    assert version["gitVersion"] == pinned.kubernetes


def test_oidc_discovery_is_served_anonymously_under_the_issuer(cluster: ControlPlane) -> None:
    discovery = _anonymous_get(cluster, cluster.issuer + "/.well-known/openid-configuration")
    assert discovery["issuer"] == cluster.issuer
    assert discovery["jwks_uri"] == cluster.issuer + "/openid/v1/jwks"
    keys = _anonymous_get(cluster, discovery["jwks_uri"])["keys"]
    assert [k["alg"] for k in keys] == ["RS256"]


def test_a_requested_token_verifies_against_the_published_jwks(
    cluster: ControlPlane, namespace: str
) -> None:
    cluster.kubectl("create", "serviceaccount", "worker", "-n", namespace)
    token = cluster.kubectl(
        "create", "token", "worker", "-n", namespace, "--audience", "https://kubemint.test"
    ).stdout.strip()
    jwks = KeySet.import_key_set(_anonymous_get(cluster, cluster.issuer + "/openid/v1/jwks"))
    claims = jwt.decode(token, jwks, algorithms=["RS256"]).claims
    assert claims["iss"] == cluster.issuer
    assert claims["aud"] == ["https://kubemint.test"]
    assert claims["sub"] == f"system:serviceaccount:{namespace}:worker"
    assert claims["exp"] > time.time()


def test_the_controller_manager_creates_default_service_accounts(
    cluster: ControlPlane, namespace: str
) -> None:
    deadline = time.monotonic() + 30
    while cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode:
        assert time.monotonic() < deadline, "no default ServiceAccount after 30s"
        time.sleep(0.3)


def test_deleting_an_owner_garbage_collects_its_dependents(
    cluster: ControlPlane, namespace: str
) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = cluster.kubectl(
        "get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    dependent = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
        "stringData": {"k": "v"},
    }
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(dependent))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    _wait_until_gone(cluster, "secret", "dependent", "-n", namespace)


def test_kubectl_get_kubemint_knows_the_category(cluster: ControlPlane, namespace: str) -> None:
    result = cluster.kubectl("get", "kubemint", "-n", namespace)
    assert "No resources found" in result.stderr
