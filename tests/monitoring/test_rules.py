"""The chart's alerting rules are valid Prometheus rules, every alert is unit-tested by
`promtool test rules` (and those tests fail when the alert is broken), and every alert has a
runbook; the dashboard is well-formed. Both name only metrics kubemint exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from kubemint.api import metric_names
from kubemint.devcluster.prometheus import PrometheusBinaries
from tests.monitoring import files
from tests.monitoring.server import selectors


def promtool(binaries: PrometheusBinaries, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries.promtool), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_check_rules_accepts_the_rules(prometheus_binaries: PrometheusBinaries) -> None:
    result = promtool(prometheus_binaries, "check", "rules", str(files.RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(files.alerts())} rules found" in result.stdout


def test_promtool_test_rules_passes(prometheus_binaries: PrometheusBinaries) -> None:
    result = promtool(prometheus_binaries, "test", "rules", str(files.RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_test_case_that_expects_it_to_fire() -> None:
    tests = yaml.safe_load(files.RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", ())
        if case.get("exp_alerts")
    }
    assert fired == {alert["alert"] for alert in files.alerts()}


@pytest.mark.parametrize("alert", [a["alert"] for a in files.alerts()])
def test_the_unit_tests_fail_when_an_alert_never_fires(
    prometheus_binaries: PrometheusBinaries, tmp_path: Path, alert: str
) -> None:
    """Each alert's expected firing is really checked: with its expression replaced by one that
    is never true, `promtool test rules` fails and names it."""
    rules = files.rules()
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = "vector(1) > 2"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    tests = yaml.safe_load(files.RULE_TESTS.read_text())
    tests["rule_files"] = [str(tmp_path / "rules.yaml")]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    result = promtool(prometheus_binaries, "test", "rules", str(tmp_path / "test.yaml"))
    assert result.returncode != 0, result.stdout
    assert f"alertname: {alert}" in result.stdout + result.stderr


def test_every_alert_links_its_own_runbook_section() -> None:
    anchors = files.runbook_anchors()
    for alert in files.alerts():
        name = alert["alert"]
        url = alert["annotations"]["runbook_url"]
        assert url == f"{files.RUNBOOK_URL}#{name.lower()}", name
        assert name.lower() in anchors, f"docs/runbooks.md has no section ## {name}"
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        assert alert["annotations"]["summary"], name
        assert alert["annotations"]["description"], name
    assert anchors == {a["alert"].lower() for a in files.alerts()}, "a runbook without an alert"


def exported_series() -> set[str]:
    families = (*metric_names.OPERATOR, *metric_names.TOKEN_SERVER)
    return {
        sample
        for family in families
        for sample in family.samples + ((family.name + "_info",) if family.type == "info" else ())
    }


def test_rules_and_dashboard_query_only_exported_metrics() -> None:
    queries = [a["expr"] for a in files.alerts()]
    queries += [expr for _, expr in files.dashboard_queries(files.dashboard())]
    named = {name for q in queries for name in re.findall(r"\bkubemint_\w+", q)}
    assert named, "no kubemint metric in the rules or the dashboard"
    unknown = named - exported_series()
    assert not unknown, f"not exported by kubemint (kubemint.api.metric_names): {unknown}"


def test_the_dashboard_is_well_formed() -> None:
    board = files.dashboard()
    assert board["uid"] == "kubemint"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in files.panels(board)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in files.panels(board):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert panel["description"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert 'job=~"$job"' in target["expr"], (panel["title"], target["expr"])
    titles = " ".join(p["title"] for p in files.panels(board)).lower()
    for topic in ("tokens/s", "latency", "failed", "staleness", "rotation"):
        assert topic in titles, topic


def test_selectors_are_read_from_an_expression_s_text() -> None:
    expr = (
        'max by (kid) (kubemint_signing_key_token_expiry_timestamp_seconds{job="a"}) > time()'
        " and on (kid) sum(rate(kubemint_tokens_total[5m])) > 0"
    )
    assert selectors(expr) == [
        'kubemint_signing_key_token_expiry_timestamp_seconds{job="a"}',
        "kubemint_tokens_total",
    ]
    assert all(selectors(alert["expr"]) for alert in files.alerts())  # each reads kubemint series
