"""The chart's alerts and dashboard against the real thing: a real Prometheus scrapes the real
operator and token server (host processes on the test control plane) while they serve real
objects and requests, loads the chart's alerting rules, and answers every dashboard query and
every alert expression's series with data. Two alerts are driven to their firing condition:
a client that is not Ready, and a retired key leaving JWKS before a token it signed expires."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from kubemint.api.meta import ANNOTATION_ROTATE
from kubemint.devcluster.prometheus import PrometheusBinaries
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import apply, custom, get, secret_data, wait_for, wait_ready
from tests.monitoring import files
from tests.monitoring.conftest import prometheus_binaries  # noqa: F401 — the fixture
from tests.monitoring.server import Prometheus, running_prometheus

SHORT_KEY = "short-retention"  # a SigningKey whose retired keys leave before its tokens expire


@dataclass
class Activity:
    """What the module did, for the tests to find in Prometheus."""

    namespace: str
    kid: str  # the key that signed `token`, since retired
    broken: str  # an OAuth2Client that is not Ready


def _host(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0]


@pytest.fixture(scope="module")
def prometheus(
    operator: RunningOperator,
    token_server: RunningServer,
    prometheus_binaries: PrometheusBinaries,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Prometheus]:
    targets = {
        "kubemint-operator": [_host(operator.metrics_url)],
        "kubemint-token-server": [_host(token_server.metrics_url)],
    }
    workdir = tmp_path_factory.mktemp("prometheus")
    with running_prometheus(prometheus_binaries, workdir, targets, [files.RULES]) as server:
        yield server


@pytest.fixture(scope="module")
def activity(
    operator: RunningOperator, token_server: RunningServer, prometheus: Prometheus
) -> Iterator[Activity]:
    """Objects and requests that make every series exist: tokens issued and refused, a
    forward-auth decision, a client that is not Ready, client-secret and signing-key rotations."""
    cluster = operator.cluster
    namespace = f"mon-{uuid.uuid4().hex[:8]}"
    calendar = namespace + "-cal"
    audience = f"https://{calendar}.test"
    for name in (namespace, calendar):
        cluster.kubectl("create", "namespace", name)
    try:
        apply(
            cluster,
            custom(
                "SigningKey",
                SHORT_KEY,
                operator.namespace,
                algorithm="ES256",
                rotation={"every": "24h", "prePublish": "1m", "retainAfter": "10m"},
            ),
            custom(
                "OAuth2Client",
                "tasks",
                namespace,
                signingKey=SHORT_KEY,
                tokenLifetime="1h",
                audiences=[audience],
                scopes=["event.view"],
                secret={"rotateEvery": "15s", "overlap": "10s"},
            ),
            custom(
                "AccessRule",
                "tasks",
                calendar,
                audience=audience,
                subjects=[{"kind": "OAuth2Client", "namespace": namespace, "name": "tasks"}],
                scopes=["event.view"],
            ),
            custom(
                "OAuth2Client",
                "broken",
                namespace,
                signingKey="no-such-key",
                audiences=[audience],
            ),
        )
        wait_ready(cluster, "OAuth2Client", namespace, "broken", "False", "SigningKeyNotFound")
        wait_ready(cluster, "OAuth2Client", namespace, "tasks")
        wait_ready(cluster, "AccessRule", calendar, "tasks")
        with httpx.Client(timeout=10) as http:
            token = _token(http, cluster_secret(operator, namespace), token_server, audience)
            wrong = {"client-id": f"{namespace}.tasks", "client-secret": "wrong"}
            refused = http.post(
                token_server.token_url,
                data={"grant_type": "client_credentials"},
                headers=_basic(wrong),
            )
            assert refused.status_code == 401, refused.text
            decision = http.get(
                token_server.issuer + "/authz/auth-request",
                params={"audience": audience},
                headers={
                    "Authorization": f"Bearer {token}",
                    "X-Original-Method": "GET",
                    "X-Original-URI": "/events",
                },
            )
            assert decision.status_code < 500, decision.text
        kid = jwt.get_unverified_header(token)["kid"]
        # Rotate the key that signed it: it retires with removeAfter = now + 10m, before the
        # token's expiry (1 h).
        cluster.kubectl(
            "annotate",
            "signingkey",
            SHORT_KEY,
            "-n",
            operator.namespace,
            f"{ANNOTATION_ROTATE}={uuid.uuid4().hex[:8]}",
            "--overwrite",
        )
        wait_for(
            lambda: any(
                r.get("kid") == kid
                for r in (
                    (get(cluster, "SigningKey", operator.namespace, SHORT_KEY) or {})
                    .get("status", {})
                    .get("retired")
                    or ()
                )
            ),
            f"key {kid} retired",
        )
        yield Activity(namespace, kid, "broken")
    finally:
        for name in (namespace, calendar):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def cluster_secret(operator: RunningOperator, namespace: str) -> dict[str, str]:
    data = wait_for(
        lambda: secret_data(operator.cluster, namespace, "tasks-credentials"), "client Secret"
    )
    return data


def _basic(data: dict[str, str]) -> dict[str, str]:
    raw = f"{data['client-id']}:{data['client-secret']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _token(http: httpx.Client, data: dict[str, str], server: RunningServer, audience: str) -> str:
    """A token, retried briefly: the server follows the API by watch, a moment behind."""
    deadline = time.monotonic() + 30
    while True:
        response = http.post(
            server.token_url,
            data={"grant_type": "client_credentials", "audience": audience},
            headers=_basic(data),
        )
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _until_all_answer(
    prometheus: Prometheus, queries: dict[str, str], timeout: float = 90
) -> dict[str, list[dict[str, Any]]]:
    """Poll the queries until each has returned data once (a rate needs two scrapes, a
    rotation's series appear on the operator's next reconcile, a previous secret's only
    during its overlap); fail naming those that never did."""
    deadline = time.monotonic() + timeout
    answers: dict[str, list[dict[str, Any]]] = {}
    while True:
        for what in [w for w in queries if w not in answers]:
            result = prometheus.query(queries[what])
            if result:
                answers[what] = result
        empty = sorted(set(queries) - set(answers))
        if not empty:
            return answers
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no data after {timeout:.0f}s for:\n"
                + "\n".join(f"{w}: {queries[w]}" for w in empty)
            )
        time.sleep(1)


def test_every_dashboard_query_returns_data(prometheus: Prometheus, activity: Activity) -> None:
    queries = {
        f"{title} — {expr}": files.with_grafana_variables(expr)
        for title, expr in files.dashboard_queries(files.dashboard())
    }
    assert len(queries) >= 20
    _until_all_answer(prometheus, queries)


def test_every_series_an_alert_reads_returns_data(
    prometheus: Prometheus, activity: Activity
) -> None:
    queries = {
        f"{alert['alert']}: {selector}": selector
        for alert in files.alerts()
        for selector in prometheus.selectors(alert["expr"])
    }
    assert {q.split(":")[0] for q in queries} == {a["alert"] for a in files.alerts()}
    _until_all_answer(prometheus, queries)


def test_prometheus_evaluates_every_rule_without_error(
    prometheus: Prometheus, activity: Activity
) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = prometheus.api("rules", type="alert")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        done = all(not r.get("lastEvaluation", "0001").startswith("0001") for r in rules)
        return rules if rules and done else None

    rules = wait_for(evaluated, "every rule evaluated")
    assert {r["name"] for r in rules} == {a["alert"] for a in files.alerts()}
    broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not broken, broken


def _firing(prometheus: Prometheus, alert: str, where: dict[str, str]) -> list[dict[str, str]]:
    """The label sets `alert`'s expression returns that carry the labels `where`, once any."""
    (rule,) = [a for a in files.alerts() if a["alert"] == alert]

    def matching() -> list[dict[str, str]] | None:
        samples = [s["metric"] for s in prometheus.query(rule["expr"])]
        found = [m for m in samples if where.items() <= m.items()]
        return found or None

    return wait_for(matching, f"{alert} for {where}", timeout=90)


def test_the_not_ready_alert_sees_the_client_that_is_not_ready(
    prometheus: Prometheus, activity: Activity
) -> None:
    (labels,) = _firing(prometheus, "KubemintObjectNotReady", {"namespace": activity.namespace})
    assert (labels["kind"], labels["name"], labels["reason"]) == (
        "OAuth2Client",
        activity.broken,
        "SigningKeyNotFound",
    )


def test_the_retired_key_alert_sees_the_key_leaving_before_its_token_expires(
    prometheus: Prometheus, activity: Activity, operator: RunningOperator
) -> None:
    (labels,) = _firing(prometheus, "KubemintRetiredKeyStillNeeded", {"kid": activity.kid})
    assert (labels["namespace"], labels["name"]) == (operator.namespace, SHORT_KEY)
    # The `default` key, whose tokens (15 min) expire before its retired keys would leave
    # (24 h), is not among the keys the alert names.
    (rule,) = [a for a in files.alerts() if a["alert"] == "KubemintRetiredKeyStillNeeded"]
    assert {s["metric"]["name"] for s in prometheus.query(rule["expr"])} == {SHORT_KEY}
