"""The chart lints, renders with every value set, and rejects bad values at install."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemint.api.audiences import ASSIGNED, FIRST_CLAIM, SOURCE_ASSIGNED, OwnerRecord, decode
from kubemint.config import DefaultSigningKey
from kubemint.devcluster import layout
from tests.chart.conftest import (
    CHART,
    KINDS_WITHOUT_CRDS,
    RELEASE,
    VALUE_SETS,
    documents,
    helm_run,
    render,
)


def kinds(manifest: str) -> list[str]:
    return [doc["kind"] for doc in documents(manifest)]


def by_kind(manifest: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents(manifest) if doc["kind"] == kind]


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def deployment(manifest: str, component: str) -> dict[str, Any]:
    (found,) = [
        d
        for d in by_kind(manifest, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


def test_helm_lint_passes_strictly(helm: Path, tmp_path: Path) -> None:
    result = helm_run(helm, "lint", "--strict", str(CHART), tmp=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_value_set_lints(helm: Path, tmp_path: Path, name: str) -> None:
    result = helm_run(helm, "lint", "--strict", str(CHART), values=VALUE_SETS[name], tmp=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _default_key(manifest: str) -> DefaultSigningKey | None:
    """The SigningKey the chart hands the operator (KUBEMINT_DEFAULT_SIGNING_KEY)."""
    return DefaultSigningKey.from_env(env_of(deployment(manifest, "operator")))


def test_default_values_render_both_components_crds_and_a_signing_key(
    rendered: dict[str, str],
) -> None:
    manifest = rendered["default"]
    assert sorted(set(kinds(manifest))) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "FlowSchema",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    key = _default_key(manifest)
    assert key is not None
    assert (key.name, key.spec["algorithm"], key.spec["use"], key.owner) == (
        "default", "ES256", "sig", ""
    )  # fmt: skip


def test_crds_render_as_the_repository_s_with_the_release_s_metadata(
    rendered: dict[str, str],
) -> None:
    crds = by_kind(rendered["default"], "CustomResourceDefinition")
    source = {
        doc["metadata"]["name"]: doc
        for path in layout.crds_dir().glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
    }
    assert sorted(c["metadata"]["name"] for c in crds) == sorted(source)
    for crd in crds:
        original = source[crd["metadata"]["name"]]
        assert crd["spec"] == original["spec"]  # the text is the file's own
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubemint"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert not by_kind(rendered["minimal"], "CustomResourceDefinition")


def test_crds_keep_false_drops_the_keep_policy(helm: Path, tmp_path: Path) -> None:
    manifest = render(helm, {"crds": {"keep": False}}, tmp_path)
    crds = by_kind(manifest, "CustomResourceDefinition")
    assert crds
    assert all("annotations" not in crd["metadata"] for crd in crds)


def test_default_issuer_is_the_token_server_service_url(rendered: dict[str, str]) -> None:
    manifest = rendered["default"]
    (service,) = by_kind(manifest, "Service")
    issuer = f"http://{service['metadata']['name']}.kubemint-system.svc"
    assert service["spec"]["ports"] == [
        {
            "name": "http",
            "port": 80,
            "targetPort": "http",
            "protocol": "TCP",
            "appProtocol": "http",
        },
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
    ]
    operator, server = deployment(manifest, "operator"), deployment(manifest, "token-server")
    assert env_of(operator)["KUBEMINT_ISSUER"] == issuer
    assert env_of(operator)["KUBEMINT_TOKEN_URL"] == issuer + "/oauth2/token"
    assert env_of(server)["KUBEMINT_ISSUER"] == issuer
    assert env_of(server)["KUBEMINT_PORT"] == "8080"
    namespace_ref = {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env_of(operator)["KUBEMINT_NAMESPACE"] == namespace_ref
    assert env_of(server)["KUBEMINT_NAMESPACE"] == namespace_ref
    assert env_of(operator)["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_commands_image_and_probes(rendered: dict[str, str]) -> None:
    manifest = rendered["default"]
    operator = deployment(manifest, "operator")["spec"]["template"]["spec"]["containers"][0]
    server = deployment(manifest, "token-server")["spec"]["template"]["spec"]["containers"][0]
    assert operator["command"] == ["kubemint", "operator"]
    assert server["command"] == ["kubemint", "token-server"]
    assert operator["image"] == server["image"] == "kubemint/kubemint:0.1.0"
    assert server["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": "http",
        "scheme": "HTTP",
    }
    assert server["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "http",
        "scheme": "HTTP",
    }


def test_token_server_spreads_over_nodes_by_default(rendered: dict[str, str]) -> None:
    spec = deployment(rendered["default"], "token-server")["spec"]["template"]["spec"]
    (constraint,) = spec["topologySpreadConstraints"]
    assert constraint["topologyKey"] == "kubernetes.io/hostname"
    assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "token-server"
    )


def test_ha_values_autoscale_the_token_server_and_protect_both(rendered: dict[str, str]) -> None:
    manifest = rendered["ha"]
    (hpa,) = by_kind(manifest, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 3
    assert hpa["spec"]["scaleTargetRef"]["name"] == "kubemint-token-server"
    assert "replicas" not in deployment(manifest, "token-server")["spec"]
    assert deployment(manifest, "operator")["spec"]["replicas"] == 2
    assert env_of(deployment(manifest, "operator"))["KUBEMINT_LEADER_ELECTION"] == "true"
    budgets = {p["metadata"]["name"]: p["spec"] for p in by_kind(manifest, "PodDisruptionBudget")}
    assert budgets["kubemint-operator"]["maxUnavailable"] == 1
    assert budgets["kubemint-token-server"]["maxUnavailable"] == "25%"


def test_ingress_monitoring_and_network_policies_render(rendered: dict[str, str]) -> None:
    manifest = rendered["ingress-monitoring-netpol"]
    (ingress,) = by_kind(manifest, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "auth.example.com"
    assert ingress["spec"]["tls"][0]["secretName"] == "auth-tls"
    (monitor,) = by_kind(manifest, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"  # not the published port
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(manifest, "NetworkPolicy")}
    server = policies["kubemint-token-server"]
    assert server["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert len(server["ingress"][0]["from"]) == 2
    # Without networkPolicy.metricsFrom no one may scrape either component.
    assert len(server["ingress"]) == 1
    assert policies["kubemint-operator"]["ingress"] == []
    assert server["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    issuer = "https://auth.example.com"
    env = env_of(deployment(manifest, "token-server"))
    assert env["KUBEMINT_ISSUER"] == issuer
    assert env["KUBEMINT_TRUSTED_PROXIES"] == "10.42.0.0/16,fd00::/8"
    assert "KUBEMINT_TRUSTED_PROXIES" not in env_of(deployment(rendered["default"], "token-server"))


def test_gateway_route_and_custom_issuer_render(rendered: dict[str, str]) -> None:
    manifest = rendered["gateway-custom-issuer"]
    (route,) = by_kind(manifest, "HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "kubemint-token-server", "port": 8080}
    ]
    operator = deployment(manifest, "operator")
    assert env_of(operator)["KUBEMINT_ISSUER"] == "https://tokens.example.org"
    assert env_of(operator)["KUBEMINT_TOKEN_URL"] == "https://tokens.example.org/oauth2/token"
    image = operator["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "kubemint/kubemint@sha256:" + "a" * 64
    key = _default_key(manifest)
    assert key is not None
    assert key.spec == {
        "algorithm": "RS256",
        "use": "sig",
        "keySize": 3072,
        "rotation": {"every": "720h", "prePublish": "24h", "retainAfter": "24h"},
    }
    assert key.owner == "kubemint-operator"  # keep: false, deleted with the Deployment
    (role,) = [
        r for r in by_kind(manifest, "Role") if r["metadata"]["name"].endswith("-signing-key")
    ]
    assert {"apiGroups": ["apps"], "resources": ["deployments"],
            "resourceNames": ["kubemint-operator"], "verbs": ["get"]} in role["rules"]  # fmt: skip


def _container(manifest: str, component: str) -> dict[str, Any]:
    container: dict[str, Any] = deployment(manifest, component)["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def test_tls_serves_https_from_the_cert_manager_secret_and_the_issuer_is_https(
    rendered: dict[str, str],
) -> None:
    manifest = rendered["tls-cert-manager"]
    issuer = "https://kubemint-token-server.kubemint-system.svc"
    for component in ("operator", "token-server"):
        assert env_of(deployment(manifest, component))["KUBEMINT_ISSUER"] == issuer
    assert env_of(deployment(manifest, "operator"))["KUBEMINT_TOKEN_URL"] == (
        issuer + "/oauth2/token"
    )
    env = env_of(deployment(manifest, "token-server"))
    assert env["KUBEMINT_TLS_CERT_FILE"] == "/etc/kubemint/tls/tls.crt"
    assert env["KUBEMINT_TLS_KEY_FILE"] == "/etc/kubemint/tls/tls.key"
    container = _container(manifest, "token-server")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS", probe
        assert container[probe]["httpGet"]["port"] == "https", probe
    (certificate,) = by_kind(manifest, "Certificate")
    secret = certificate["spec"]["secretName"]
    assert secret == "kubemint-token-server-tls"
    assert certificate["spec"]["issuerRef"]["kind"] == "ClusterIssuer"
    assert certificate["spec"]["privateKey"]["rotationPolicy"] == "Always"
    assert "kubemint-token-server.kubemint-system.svc" in certificate["spec"]["dnsNames"]
    assert "tokens.internal.example" in certificate["spec"]["dnsNames"]
    spec = deployment(manifest, "token-server")["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "tls"]
    assert volume["secret"]["secretName"] == secret
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tls"]
    # A subPath mount would never see the rotated files.
    assert mount == {"name": "tls", "mountPath": "/etc/kubemint/tls", "readOnly": True}
    (service,) = by_kind(manifest, "Service")
    assert service["spec"]["ports"][0] == {
        "name": "https",
        "port": 443,
        "targetPort": "https",
        "protocol": "TCP",
        "appProtocol": "https",
    }
    (ingress,) = by_kind(manifest, "Ingress")
    backends = [p["backend"] for p in ingress["spec"]["rules"][0]["http"]["paths"]]
    assert {b["service"]["port"]["name"] for b in backends} == {"https"}
    (monitor,) = by_kind(manifest, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(manifest, "NetworkPolicy")}
    metrics_rule = policies["kubemint-token-server"]["ingress"][1]
    assert metrics_rule["ports"] == [{"port": 9090, "protocol": "TCP"}]
    assert metrics_rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "mon"
    }


def test_tls_from_an_existing_secret_on_a_custom_port(rendered: dict[str, str]) -> None:
    manifest = rendered["tls-existing-secret"]
    issuer = "https://kubemint-token-server.kubemint-system.svc:8443"
    assert env_of(deployment(manifest, "operator"))["KUBEMINT_ISSUER"] == issuer
    env = env_of(deployment(manifest, "token-server"))
    assert env["KUBEMINT_ISSUER"] == issuer
    assert env["KUBEMINT_TLS_RELOAD_INTERVAL"] == "5"
    assert "Certificate" not in kinds(manifest)
    spec = deployment(manifest, "token-server")["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "tls"]
    assert volume["secret"]["secretName"] == "my-token-server-tls"
    (route,) = by_kind(manifest, "HTTPRoute")
    assert route["spec"]["rules"][0]["backendRefs"][0]["port"] == 8443


def test_without_tls_nothing_mounts_a_certificate(rendered: dict[str, str]) -> None:
    container = _container(rendered["default"], "token-server")
    assert "KUBEMINT_TLS_CERT_FILE" not in env_of(deployment(rendered["default"], "token-server"))
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert [m["name"] for m in container["volumeMounts"]] == ["tmp"]
    assert "Certificate" not in kinds(rendered["default"])


def test_minimal_values_leave_out_the_optional_objects(rendered: dict[str, str]) -> None:
    manifest = rendered["minimal"]
    assert not {"PodDisruptionBudget", "HorizontalPodAutoscaler"} & set(kinds(manifest))
    assert _default_key(manifest) is None
    names = [r["metadata"]["name"] for r in by_kind(manifest, "Role")]
    # no leader-election Role without election
    assert sorted(names) == ["kubemint-operator-audiences", "kubemint-token-server"]
    spec = deployment(manifest, "token-server")["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in spec


def test_both_components_decide_audience_ownership_in_the_same_mode(
    rendered: dict[str, str],
) -> None:
    for name, expected in (("default", FIRST_CLAIM), ("assigned-audiences", ASSIGNED)):
        for component in ("operator", "token-server"):
            env = env_of(deployment(rendered[name], component))
            assert env["KUBEMINT_AUDIENCE_OWNERSHIP"] == expected, (name, component)


def test_assignments_render_records_kubemint_reads_as_assignments(
    rendered: dict[str, str],
) -> None:
    assert not by_kind(rendered["default"], "ConfigMap")
    records = by_kind(rendered["assigned-audiences"], "ConfigMap")
    found = {}
    for body in records:
        audience = body["data"]["audience"]
        assert body["metadata"]["namespace"] == "kubemint-system"
        assert body["metadata"]["labels"]["kubemint.io/role"] == "audience-owner"
        found[audience] = decode(body, audience)
    assert found == {
        "https://calendar.example.com": OwnerRecord(
            "https://calendar.example.com", "calendar", SOURCE_ASSIGNED
        ),
        "urn:files": OwnerRecord("urn:files", "files", SOURCE_ASSIGNED),
    }


@pytest.mark.parametrize(("name", "kinds_"), sorted(KINDS_WITHOUT_CRDS.items()))
def test_kinds_skipped_in_the_dry_run_are_rendered(
    rendered: dict[str, str], name: str, kinds_: set[str]
) -> None:
    assert kinds_ <= set(kinds(rendered[name]))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param(
            {"tokenServer": {"replicas": 0}},
            "/tokenServer/replicas",
            id="zero token-server replicas",
        ),
        pytest.param(
            {"signingKey": {"algorithm": "HS256"}},
            "/signingKey/algorithm",
            id="an algorithm kubemint does not support",
        ),
        pytest.param(
            {"tokenserver": {"replicas": 3}},
            "'tokenserver' not allowed",
            id="a misspelt top-level key",
        ),
        pytest.param(
            {"operator": {"recheckInterval": "30s"}},
            "/operator/recheckInterval",
            id="a string where a number of seconds belongs",
        ),
        pytest.param(
            {"operator": {"leaderelection": {"enabled": True}}},
            "'leaderelection' not allowed",
            id="a misspelt nested key",
        ),
        pytest.param(
            {"image": {"pullPolicy": "Sometimes"}},
            "/image/pullPolicy",
            id="an unknown pull policy",
        ),
        pytest.param(
            {"signingKey": {"rotation": {"every": "30d"}}},
            "/signingKey/rotation/every",
            id="a rotation period in days",
        ),
        pytest.param(
            {"tokenServer": {"httpRoute": {"enabled": True}}},
            "/tokenServer/httpRoute/parentRefs",
            id="an HTTPRoute without a Gateway",
        ),
        pytest.param(
            {"tokenServer": {"trustedProxies": ["ingress-nginx"]}},
            "/tokenServer/trustedProxies/0",
            id="a proxy named instead of a CIDR",
        ),
        pytest.param(
            {"issuer": "auth.example.com"},
            "/issuer",
            id="an issuer that is not a URL",
        ),
        pytest.param(
            {"audiences": {"ownership": "first-claim"}},
            "/audiences/ownership",
            id="an unknown ownership mode",
        ),
        pytest.param(
            {"audiences": {"assignments": [{"audience": "https://a", "namespace": "Team A"}]}},
            "/audiences/assignments/0/namespace",
            id="an assignment to something that is no namespace name",
        ),
        pytest.param(
            {
                "audiences": {
                    "assignments": [
                        {"audience": "https://a", "namespace": "a"},
                        {"audience": "https://a", "namespace": "b"},
                    ]
                }
            },
            '"https://a" is assigned twice',
            id="one audience assigned twice",
        ),
        pytest.param(
            {"tokenServer": {"tls": {"enabled": True}}},
            "tokenServer.tls.enabled needs tokenServer.tls.secretName",
            id="TLS without a certificate",
        ),
        pytest.param(
            {"tokenServer": {"tls": {"enabled": True, "certManager": {"enabled": True}}}},
            "/tokenServer/tls/certManager/issuerRef/name",
            id="a cert-manager Certificate without an issuer",
        ),
        pytest.param(
            {"tokenServer": {"tls": {"enabled": True, "secretName": "My Cert"}}},
            "/tokenServer/tls/secretName",
            id="a Secret name that is not a name",
        ),
        pytest.param(
            {"tokenServer": {"publishedPaths": [{"path": "/oauth2", "type": "PathPrefix"}]}},
            "/tokenServer/publishedPaths/0/type",
            id="a Gateway path type where the Ingress one belongs",
        ),
        pytest.param(
            {"tokenServer": {"publishedPaths": [{"path": "oauth2/token", "type": "Exact"}]}},
            "/tokenServer/publishedPaths/0/path",
            id="a published path without its leading slash",
        ),
        pytest.param(
            {"tokenServer": {"metricsPort": 8080}},
            "/tokenServer/metricsPort",
            id="metrics on the main port",
        ),
        pytest.param(
            {"operator": {"replicas": 2, "leaderElection": {"enabled": False}}},
            "operator.replicas > 1 needs operator.leaderElection.enabled",
            id="several operators without leader election",
        ),
    ],
)
def test_bad_values_are_rejected_naming_the_key(
    helm: Path, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    result = helm_run(helm, "template", RELEASE, str(CHART), values=values, tmp=tmp_path)
    assert result.returncode != 0, result.stdout
    assert message in result.stderr
