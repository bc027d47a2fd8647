"""Both processes as operations sees them, on a real API server: the operator's /metrics
(scraped over HTTP), its Warning Events and liveness endpoint, and both processes' JSON logs
and audit lines. This module's operator and token server log JSON (KUBEMINT_LOG_FORMAT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kubemint.api import metric_names as m
from kubemint.devcluster import ControlPlane, layout
from kubemint.devcluster.components import (
    operator_process,
)
from kubemint.devcluster.controlplane import free_port
from kubemint.devcluster.helm import resolve_helm
from tests.integration.conftest import (
    RunningOperator,
    RunningServer,
    operator_url,
    own_operator,
    own_token_server,
)
from tests.integration.kube_helpers import apply, custom, get, secret_data, wait_for, wait_ready

JSON_LOGS = {"KUBEMINT_LOG_FORMAT": "json"}


@pytest.fixture(scope="module")
def operator(
    cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    """As conftest's, logging JSON lines."""
    with own_operator(cluster, tmp_path_factory, extra_env=JSON_LOGS) as running:
        yield running


@pytest.fixture(scope="module")
def token_server(
    operator: RunningOperator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """As conftest's, logging JSON lines."""
    with own_token_server(operator, tmp_path_factory, extra_env=JSON_LOGS) as running:
        yield running


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    """Every sample of one scrape, by series name."""
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 — loopback
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def series(samples: Samples, series_name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    return [
        (have, value)
        for have, value in samples.get(series_name, [])
        if all(have.get(k) == v for k, v in labels.items())
    ]


def warnings_for(cluster: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name},type=Warning",
        "-o",
        "json",
    )
    return list(json.loads(out.stdout)["items"])


def test_metrics_show_each_objects_readiness_and_follow_it(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(
        cluster,
        custom("OAuth2Client", "billing", namespace, audiences=["https://api.test"]),
    )
    wait_ready(cluster, "OAuth2Client", namespace, "billing")
    ident = {"kind": "OAuth2Client", "namespace": namespace, "name": "billing"}

    def ready_series(value: float) -> list[tuple[dict[str, str], float]] | None:
        found = series(scrape(operator.metrics_url), m.OBJECT_READY.name, **ident)
        return found if found and found[0][1] == value else None

    (labels, _), *more = wait_for(lambda: ready_series(1.0), "billing ready=1 in /metrics")
    assert not more
    assert labels["reason"]

    # Not Ready: its key set is to come from a Secret that does not exist.
    cluster.kubectl(
        "patch",
        "oauth2client",
        "billing",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps(
            {"spec": {"authMethod": "private_key_jwt", "jwksSecretRef": {"name": "no-keys"}}}
        ),
    )
    wait_ready(cluster, "OAuth2Client", namespace, "billing", status="False")
    (labels, _), *more = wait_for(lambda: ready_series(0.0), "billing ready=0 in /metrics")
    assert not more, "the old reason's series must be gone"
    assert labels["reason"] == "JWKSSecretNotFound"

    # …and a Warning Event says why, once, naming the object.
    events = wait_for(
        lambda: [
            e
            for e in warnings_for(cluster, namespace, "billing")
            if e["reason"] == "JWKSSecretNotFound"
        ],
        "a Warning Event for billing",
    )
    assert events[0]["involvedObject"]["kind"] == "OAuth2Client"
    assert f"Secret {namespace}/no-keys" in events[0]["message"]

    # Re-checked every second while not Ready (the fixture's interval): still one Event.
    def reconciles() -> float:
        found = series(scrape(operator.metrics_url), m.RECONCILES.samples[0], kind="OAuth2Client")
        return found[0][1] if found else 0.0

    seen = reconciles()
    wait_for(lambda: reconciles() >= seen + 3, "three more re-checks of billing")
    assert len(warnings_for(cluster, namespace, "billing")) == 1

    samples = scrape(operator.metrics_url)
    assert series(samples, m.RECONCILES.samples[0], kind="OAuth2Client")[0][1] >= 2
    assert series(samples, m.RECONCILE_SECONDS.name + "_count", kind="OAuth2Client")
    assert series(samples, m.LEADER.name) == [({}, 1.0)]
    assert series(samples, m.OPERATOR_BUILD.name + "_info")[0][1] == 1.0
    rotation = series(
        samples, m.SIGNING_KEY_NEXT_ROTATION.name, namespace=operator.namespace, name="default"
    )
    assert rotation
    assert rotation[0][1] > 0
    assert samples.get("process_resident_memory_bytes")
    assert not [name for name in samples if name.endswith("_created")]

    # Deleted: its series goes.
    cluster.kubectl("delete", "oauth2client", "billing", "-n", namespace)
    wait_for(
        lambda: not series(scrape(operator.metrics_url), m.OBJECT_READY.name, **ident) or None,
        "billing's series gone from /metrics",
    )


def test_a_reconcile_the_api_server_refuses_is_one_warning_event_on_the_object(
    operator: RunningOperator, namespace: str
) -> None:
    """A ResourceQuota that allows the namespace no Secret (as its admin may set one) makes
    the API server refuse the client's credentials Secret: the reconcile raises, and a Warning
    Event `ReconcileFailed` on the OAuth2Client says what the API server answered, once
    however often kopf retries; with the quota gone the client becomes Ready."""
    cluster = operator.cluster
    cluster.kubectl("create", "quota", "no-secrets", "-n", namespace, "--hard=secrets=0")
    # What kube-controller-manager's quota controller writes (this harness does not run it):
    # with it the refusal is "exceeded quota", as in a cluster; without, "status unknown".
    usage = {"status": {"hard": {"secrets": "0"}, "used": {"secrets": "0"}}}
    cluster.kubectl(
        "patch", "resourcequota", "no-secrets", "-n", namespace,
        "--subresource=status", "--type=merge", "-p", json.dumps(usage),
    )  # fmt: skip
    apply(cluster, custom("OAuth2Client", "payroll", namespace, audiences=["https://api.test"]))

    def failures() -> list[dict[str, Any]]:
        events = warnings_for(cluster, namespace, "payroll")
        return [e for e in events if e["reason"] == "ReconcileFailed"]

    (event, *more) = wait_for(failures, "a ReconcileFailed Warning Event for payroll")
    assert not more
    live = get(cluster, "OAuth2Client", namespace, "payroll")
    assert live is not None
    involved = event["involvedObject"]
    assert {k: involved.get(k) for k in ("apiVersion", "kind", "namespace", "name", "uid")} == {
        "apiVersion": "kubemint.io/v1alpha1",
        "kind": "OAuth2Client",
        "namespace": namespace,
        "name": "payroll",
        "uid": live["metadata"]["uid"],
    }
    assert "the API server answered 403 Forbidden" in event["message"], event["message"]
    assert "see the operator log" in event["message"]

    # kopf retries it every 5 s (BACKOFF): still one Event for the same failure.
    def errors() -> float:
        found = series(
            scrape(operator.metrics_url), m.RECONCILE_ERRORS.samples[0], kind="OAuth2Client"
        )
        return found[0][1] if found else 0.0

    seen = errors()
    wait_for(lambda: errors() >= seen + 2, "two more failed reconciles of payroll", timeout=40)
    assert len(failures()) == 1

    cluster.kubectl("delete", "resourcequota", "no-secrets", "-n", namespace)
    wait_ready(cluster, "OAuth2Client", namespace, "payroll")
    assert secret_data(cluster, namespace, "payroll-credentials") is not None


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a log as JSON; fails naming the first line that is not."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            out.append(json.loads(line))
        except ValueError:
            pytest.fail(f"log line {number} is not JSON: {line!r}")
    return out


def test_operator_logs_are_json_lines_naming_their_object_without_timer_chatter(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(cluster, custom("OAuth2Client", "logged", namespace, audiences=["https://api.test"]))
    wait_ready(cluster, "OAuth2Client", namespace, "logged")

    # The default SigningKey's timer runs every second here: wait for three runs of it.
    def key_reconciles() -> float:
        found = series(scrape(operator.metrics_url), m.RECONCILES.samples[0], kind="SigningKey")
        return found[0][1] if found else 0.0

    seen = key_reconciles()
    wait_for(lambda: key_reconciles() >= seen + 3, "three timer runs of the SigningKey")

    lines = json_lines(operator.log())
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    about = [line for line in lines if line.get("object", {}).get("name") == "logged"]
    assert about, "no log line names the OAuth2Client"
    assert about[0]["object"] == {"kind": "OAuth2Client", "namespace": namespace, "name": "logged"}
    # Chatter is a timer's routine lines; a failed one (another test's refused Secret) is news.
    timers = [
        line
        for line in lines
        if line["message"].startswith("Timer '") and line["level"] not in ("WARNING", "ERROR")
    ]
    assert not timers, f"timer chatter at the default level: {timers[:3]}"


def test_token_server_logs_and_audit_lines_are_json_lines(token_server: RunningServer) -> None:
    response = httpx.post(
        token_server.token_url,
        data={"grant_type": "client_credentials"},
        auth=("nobody.here", "wrong"),
        timeout=10,
    )
    assert response.status_code == 401

    def audited() -> list[dict[str, Any]] | None:
        lines = json_lines(token_server.log())
        return [line for line in lines if line.get("audit") == "token"] or None

    (line, *_) = wait_for(audited, "the token request's audit line")
    assert (line["outcome"], line["error"]) == ("refused", "invalid_client")
    assert line["client_id"] == "unknown"  # a made-up id is not echoed
    assert "time" in line
    assert "wrong" not in token_server.log()
    others = [entry for entry in json_lines(token_server.log()) if "audit" not in entry]
    assert any(entry["logger"] == "kubemint.server" for entry in others)


def chart_liveness_probe() -> dict[str, Any]:
    """The operator container's livenessProbe as the chart renders it by default."""
    chart = layout.repo_root() / "charts" / "kubemint"
    rendered = subprocess.run(
        [
            str(resolve_helm()),
            "template",
            "k",
            str(chart),
            "-s",
            "templates/operator-deployment.yaml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    deployment = yaml.safe_load(rendered)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container["livenessProbe"])


def probe(url: str, timeout: float) -> bool:
    """One HTTP probe as the kubelet runs it: success is a 2xx/3xx answer within `timeout`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 — loopback
            return bool(200 <= response.status < 400)
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return False


def test_the_liveness_probe_fails_when_the_operators_event_loop_is_wedged(
    operator: RunningOperator, tmp_path: Path
) -> None:
    spec = chart_liveness_probe()
    path, timeout = spec["httpGet"]["path"], float(spec["timeoutSeconds"])
    assert path == "/healthz"
    assert probe(operator.liveness_url, timeout), "the leading operator must pass its probe"

    # A second replica: it stands by (the module's operator holds the Lease) and must pass
    # its probe too, or the kubelet would restart every standby.
    standby = operator_process(
        operator.cluster,
        namespace=operator.namespace,
        issuer=operator.issuer,
        name="standby",
        lease_name="kubemint-operator",
        log_dir=tmp_path,
        extra_env={
            "KUBEMINT_PROBE_HOST": "127.0.0.1",
            "KUBEMINT_METRICS_PORT": str(free_port()),
            "KUBEMINT_LIVENESS_PORT": str(free_port()),
        },
    )
    # The same operator, started through a script that lets the test wedge its loop.
    standby.argv = [sys.executable, str(Path(__file__).with_name("wedgeable_operator.py"))]
    standby.start()
    try:
        liveness = operator_url(standby, "KUBEMINT_LIVENESS_PORT", path)
        metrics = operator_url(standby, "KUBEMINT_METRICS_PORT", "/metrics")
        wait_for(lambda: probe(liveness, timeout), "the standby's liveness endpoint")
        assert series(scrape(metrics), m.LEADER.name) == [({}, 0.0)]

        assert standby.pid is not None
        os.kill(standby.pid, signal.SIGUSR1)  # its event loop now blocks for good
        assert not probe(liveness, timeout)
        assert not probe(liveness, timeout)
        # Wedged, not dead: the process still runs and its metrics thread still answers,
        # so only the probe on the loop tells the kubelet to restart it.
        assert standby.alive()
        assert series(scrape(metrics), m.LEADER.name) == [({}, 0.0)]
    finally:
        standby.kill()
