"""The chart wires the operator's metrics and liveness ports, its probe, the log format of
both processes, and a NetworkPolicy that opens only the metrics port, only to metricsFrom."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.chart.conftest import documents, render


def _container(manifest: str, component: str) -> dict[str, Any]:
    (deployment,) = [
        d
        for d in documents(manifest)
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_the_operator_probe_targets_the_port_its_liveness_endpoint_listens_on(
    helm: Path, tmp_path: Path
) -> None:
    operator = _container(render(helm, {}, tmp_path), "operator")
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    env = _env(operator)
    probe = operator["livenessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert str(ports["healthz"]) == env["KUBEMINT_LIVENESS_PORT"] == "8081"
    assert str(ports["metrics"]) == env["KUBEMINT_METRICS_PORT"] == "8080"
    assert probe["timeoutSeconds"] * probe["failureThreshold"] >= 30
    assert env["KUBEMINT_LOG_FORMAT"] == "text"


def test_log_format_applies_to_both_processes(helm: Path, tmp_path: Path) -> None:
    manifest = render(helm, {"logFormat": "json", "logLevel": "DEBUG"}, tmp_path)
    for component in ("operator", "token-server"):
        env = _env(_container(manifest, component))
        assert (env["KUBEMINT_LOG_FORMAT"], env["KUBEMINT_LOG_LEVEL"]) == ("json", "DEBUG")


def _operator_policy(manifest: str) -> dict[str, Any]:
    (policy,) = [
        d
        for d in documents(manifest)
        if d["kind"] == "NetworkPolicy"
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    ]
    return dict(policy["spec"])


def test_the_operator_metrics_port_opens_only_to_metrics_from(helm: Path, tmp_path: Path) -> None:
    closed = _operator_policy(render(helm, {"networkPolicy": {"enabled": True}}, tmp_path))
    assert closed["ingress"] == []

    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    values = {"networkPolicy": {"enabled": True, "metricsFrom": [monitoring]}}
    (rule,) = _operator_policy(render(helm, values, tmp_path))["ingress"]
    assert rule == {"ports": [{"port": 8080, "protocol": "TCP"}], "from": [monitoring]}
