"""The operator's metrics and Warning Events, from the statuses reconciles write."""

from __future__ import annotations

import kopf
from kubernetes.client.exceptions import ApiException
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kubemint.api import metric_names as m
from kubemint.controller.metrics import OperatorMetrics, object_state
from kubemint.controller.observe import WarningGate, failure_message


def _ready(status: str, reason: str) -> dict[str, object]:
    return {"conditions": [{"type": "Ready", "status": status, "reason": reason}]}


def _families(metrics: OperatorMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = generate_latest(metrics.registry).decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_every_exported_family_is_named_in_metric_names() -> None:
    metrics = OperatorMetrics()
    metrics.reconciled(
        "SigningKey",
        "kms",
        "default",
        {
            **_ready("True", "Rotated"),
            "nextRotationAt": "2030-01-01T00:00:00Z",
            "retired": [{"kid": "k1", "removeAfter": "2030-01-02T00:00:00Z"}],
        },
        0.01,
    )
    metrics.reconciled(
        "OAuth2Client",
        "t",
        "c",
        {
            **_ready("True", "Ready"),
            "nextSecretRotationAt": "2030-01-01T00:00:00Z",
            "previousSecretExpiresAt": "2030-01-01T01:00:00Z",
        },
        0.01,
    )
    metrics.failed("OAuth2Client", 0.01)
    names = {name for name in _families(metrics) if not name.startswith(("process_", "python_"))}
    declared = {sample for metric in m.OPERATOR for sample in metric.samples}
    declared |= {m.OPERATOR_BUILD.name + "_info"}
    assert names <= declared
    assert names >= declared - {m.OPERATOR_BUILD.name}


def test_an_objects_series_follows_its_status_and_leaves_with_it() -> None:
    metrics = OperatorMetrics()
    metrics.reconciled("OAuth2Client", "t", "c", _ready("True", "Ready"), 0.01)
    metrics.reconciled("OAuth2Client", "t", "c", _ready("False", "JWKSSecretNotFound"), 0.01)
    ready = _families(metrics)[m.OBJECT_READY.name]
    assert ready == [
        (
            {"kind": "OAuth2Client", "namespace": "t", "name": "c", "reason": "JWKSSecretNotFound"},
            0.0,
        )
    ]
    metrics.forget("OAuth2Client", "t", "c")
    assert m.OBJECT_READY.name not in _families(metrics)


def test_timestamps_come_from_the_status_and_bad_ones_are_left_out() -> None:
    state = object_state(
        "SigningKey",
        {
            **_ready("True", "Rotated"),
            "nextRotationAt": "2030-01-01T00:00:00Z",
            "retired": [
                {"kid": "k1", "removeAfter": "soon"},
                {"kid": "k2", "removeAfter": "2030-01-01T00:00:00Z"},
            ],
        },
    )
    assert state is not None
    assert state.next_rotation == 1893456000.0
    assert state.retired_removals == (("k2", 1893456000.0),)
    assert object_state("OAuth2Client", {}) is None  # not reconciled yet: no series
    account = object_state(
        "ServiceAccount",
        {**_ready("True", "Reconciled"), "nextPasswordRotationAt": "2030-01-01T00:00:00Z"},
    )
    assert account is not None
    assert account.secret_rotation == 1893456000.0


def test_a_problem_is_posted_once_per_change_and_again_only_after_the_repeat_interval() -> None:
    gate = WarningGate(repeat_after=3600)
    key = ("OAuth2Client", "t", "c")
    assert gate.should_post(key, ("JWKSSecretNotFound", "m"), now=0)
    assert not gate.should_post(key, ("JWKSSecretNotFound", "m"), now=5)  # the next retry
    assert gate.should_post(key, ("InvalidJWKS", "m2"), now=10)  # changed
    assert gate.should_post(key, ("InvalidJWKS", "m2"), now=3611)  # an hour on
    gate.resolved(key)  # Ready again
    assert gate.should_post(key, ("InvalidJWKS", "m2"), now=3612)


def test_a_failure_message_never_carries_arbitrary_exception_text() -> None:
    leaked = failure_message(ValueError("client-secret=kmint_abc"))
    assert "kmint_abc" not in leaked
    assert "ValueError" in leaked
    api = failure_message(ApiException(status=409, reason="Conflict"))
    assert "409 Conflict" in api
    assert "namespace x is gone" in failure_message(kopf.TemporaryError("namespace x is gone"))
