"""The operator as monitoring sees it, on a real API server: its /metrics (scraped over HTTP),
its Warning Events, its liveness endpoint."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from kubemint.api import metric_names as m
from kubemint.devcluster import ControlPlane
from tests.integration.conftest import RunningOperator
from tests.integration.kube_helpers import apply, custom, wait_for, wait_ready

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
