"""The chart ships kubemint's alerts as a PrometheusRule and its dashboard as a ConfigMap for
Grafana's sidecar, both off by default and both exactly the files tests/monitoring checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.chart.conftest import documents, render
from tests.monitoring import files

ON = {"metrics": {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}}


def one(manifest: str, kind: str, suffix: str = "") -> dict[str, Any]:
    (found,) = [
        d
        for d in documents(manifest)
        if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)
    ]
    return found


def test_neither_is_rendered_by_default(rendered: dict[str, str]) -> None:
    docs = documents(rendered["default"])
    assert "PrometheusRule" not in {d["kind"] for d in docs}
    assert not [d for d in docs if d["metadata"]["name"].endswith("-dashboard")]


def test_the_prometheus_rule_holds_the_rules_file(helm: Path, tmp_path: Path) -> None:
    rule = one(render(helm, ON, tmp_path), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "kubemint-system"
    assert rule["spec"]["groups"] == files.rules()["groups"]


def test_the_runbook_url_value_moves_every_alerts_link(helm: Path, tmp_path: Path) -> None:
    wiki = "https://wiki.example.com/ops/kubemint"
    values = {"metrics": {"prometheusRule": {"enabled": True, "runbookUrl": wiki}}}
    groups = one(render(helm, values, tmp_path), "PrometheusRule")["spec"]["groups"]
    rendered = [r for g in groups for r in g["rules"]]
    expected = files.alerts()
    for alert in expected:
        anchor = alert["annotations"]["runbook_url"].split("#")[1]
        alert["annotations"]["runbook_url"] = f"{wiki}#{anchor}"
    assert rendered == expected


def test_the_dashboard_config_map_is_labelled_for_the_sidecar(helm: Path, tmp_path: Path) -> None:
    values = {
        "metrics": {
            "grafanaDashboard": {
                "enabled": True,
                "namespace": "monitoring",
                "annotations": {"grafana_folder": "Auth"},
            }
        }
    }
    config_map = one(render(helm, values, tmp_path), "ConfigMap", "-dashboard")
    meta = config_map["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["labels"]["grafana_dashboard"] == "1"
    assert meta["annotations"] == {"grafana_folder": "Auth"}
    assert json.loads(config_map["data"]["kubemint.json"]) == files.dashboard()


def test_the_operator_is_scraped_by_a_pod_monitor_honouring_its_labels(
    rendered: dict[str, str],
) -> None:
    """The operator has no Service; its per-object series carry the object's `namespace`, which
    must survive the scrape (honorLabels) for the alerts to name the right namespace."""
    assert not [d for d in documents(rendered["default"]) if d["kind"] == "PodMonitor"]
    (monitor,) = [
        d for d in documents(rendered["ingress-monitoring-netpol"]) if d["kind"] == "PodMonitor"
    ]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["honorLabels"]) == (
        "metrics",
        "/metrics",
        True,
    )
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    operator = next(
        d for d in documents(rendered["ingress-monitoring-netpol"])
        if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator")
    )  # fmt: skip
    ports = operator["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert "metrics" in {p["name"] for p in ports}  # what the PodMonitor names
