"""The chart's monitoring files, read the way Prometheus and Grafana read them: the alerting
rules (charts/kubemint/files/prometheus-rules.yaml), the dashboard
(charts/kubemint/files/grafana-dashboard.json) and the runbooks (docs/runbooks.md)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from kubemint.devcluster import layout

FILES = layout.repo_root() / "charts" / "kubemint" / "files"
RULES = FILES / "prometheus-rules.yaml"
DASHBOARD = FILES / "grafana-dashboard.json"
RUNBOOKS = layout.repo_root() / "docs" / "runbooks.md"
RULE_TESTS = Path(__file__).parent / "rules-test.yaml"
RUNBOOK_URL = "https://github.com/kubemint/kubemint/blob/main/docs/runbooks.md"

# What Grafana puts in for its variables when the dashboard shows every job over the test's
# short run (it scrapes every second, so a 15 s rate window holds several samples).
GRAFANA_VARIABLES = {"$__rate_interval": "15s", "$__range": "5m", "$job": ".*"}


def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rules()["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", ())


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of every panel, as written."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(board)
        for target in panel.get("targets", ())
    ]


def with_grafana_variables(expr: str) -> str:
    """The query Grafana sends for `expr` (longest variable names replaced first)."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


def runbook_anchors() -> set[str]:
    """GitHub's anchors of the runbooks' `## ` headings (lowercased, spaces to dashes)."""
    headings = re.findall(r"^## (.+)$", RUNBOOKS.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
