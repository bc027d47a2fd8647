"""The operator's Prometheus metrics (names in kubemint.api.metric_names): what each
reconciled object's status says (Ready and why, its rotation times), reconcile counts,
errors and durations, leadership and build info; served on their own port.

Per-object series come from a table the reconcile wrapper fills with what it just wrote,
rendered at scrape time: a scrape reads no object from the API server, and a deleted
object's series go with it (`forget`)."""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kubemint.api import metric_names as m
from kubemint.api.meta import parse_time

Key = tuple[str, str, str]  # kind, namespace, name
RECONCILED_KINDS = ("OAuth2Client", "ServiceAccount", "AccessRule", "SigningKey", "TrustedIssuer")


@dataclass(frozen=True)
class ObjectState:
    """The metric-relevant part of one object's status."""

    ready: bool
    reason: str
    next_rotation: float | None = None  # SigningKey: nextRotationAt
    retired_removals: tuple[tuple[str, float], ...] = ()  # SigningKey: (kid, removeAfter)
    secret_rotation: float | None = None  # nextSecretRotationAt / nextPasswordRotationAt
    previous_expiry: float | None = None  # clients: previousSecretExpiresAt


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value).timestamp()
    except ValueError:
        return None


def ready_condition(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next(
        (
            c
            for c in status.get("conditions") or ()
            if isinstance(c, Mapping) and c.get("type") == "Ready"
        ),
        None,
    )


def object_state(kind: str, status: Mapping[str, Any]) -> ObjectState | None:
    """What the metrics show for an object with this status; None before it has a Ready
    condition (nothing reconciled it yet)."""
    ready = ready_condition(status)
    if ready is None:
        return None
    removals: list[tuple[str, float]] = []
    if kind == "SigningKey":
        for retired in status.get("retired") or ():
            when = _timestamp(retired.get("removeAfter")) if isinstance(retired, Mapping) else None
            if when is not None and retired.get("kid"):
                removals.append((str(retired["kid"]), when))
    return ObjectState(
        ready=ready.get("status") == "True",
        reason=str(ready.get("reason") or ""),
        next_rotation=_timestamp(status.get("nextRotationAt")) if kind == "SigningKey" else None,
        retired_removals=tuple(removals),
        # A ServiceAccount's app password is its client secret (same metric, its kind).
        secret_rotation=_timestamp(
            status.get("nextSecretRotationAt") or status.get("nextPasswordRotationAt")
        ),
        previous_expiry=_timestamp(status.get("previousSecretExpiresAt")),
    )


def _family(metric: m.Metric) -> GaugeMetricFamily:
    return GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)


class ObjectCollector(Collector):
    """Renders the object table at scrape time (a scrape runs in the metrics thread)."""

    def __init__(self) -> None:
        self.objects: dict[Key, ObjectState] = {}

    def collect(self) -> Iterator[Metric]:
        objects = dict(self.objects)  # one atomic copy: the event loop keeps writing
        ready = _family(m.OBJECT_READY)
        rotation = _family(m.SIGNING_KEY_NEXT_ROTATION)
        removal = _family(m.SIGNING_KEY_RETIRED_REMOVAL)
        secret = _family(m.CLIENT_SECRET_NEXT_ROTATION)
        previous = _family(m.CLIENT_PREVIOUS_SECRET_EXPIRY)
        for (kind, namespace, name), state in objects.items():
            ready.add_metric([kind, namespace, name, state.reason], 1.0 if state.ready else 0.0)
            if state.next_rotation is not None:
                rotation.add_metric([namespace, name], state.next_rotation)
            for kid, when in state.retired_removals:
                removal.add_metric([namespace, name, kid], when)
            if state.secret_rotation is not None:
                secret.add_metric([kind, namespace, name], state.secret_rotation)
            if state.previous_expiry is not None:
                previous.add_metric([kind, namespace, name], state.previous_expiry)
        yield from (ready, rotation, removal, secret, previous)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected at scrape time only, never at registration


def version() -> str:
    try:
        return metadata.version("kubemint")
    except metadata.PackageNotFoundError:
        return "unknown"


class OperatorMetrics:
    def __init__(self) -> None:
        # No *_created series (a process-wide switch in prometheus_client): nothing queries
        # them, and they add a series per counter and histogram child.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.objects = ObjectCollector()
        self.registry.register(self.objects)
        self.reconciles = Counter(
            m.RECONCILES.name, m.RECONCILES.help, m.RECONCILES.labels, registry=self.registry
        )
        self.errors = Counter(
            m.RECONCILE_ERRORS.name,
            m.RECONCILE_ERRORS.help,
            m.RECONCILE_ERRORS.labels,
            registry=self.registry,
        )
        # Every kind's error count exists from the start, at 0: rate() then sees the first
        # error (a series born at 1 hides it), and the alert on errors reads a real series.
        for kind in RECONCILED_KINDS:
            self.errors.labels(kind)
        self.seconds = Histogram(
            m.RECONCILE_SECONDS.name,
            m.RECONCILE_SECONDS.help,
            m.RECONCILE_SECONDS.labels,
            buckets=m.RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self.leader = Gauge(m.LEADER.name, m.LEADER.help, registry=self.registry)
        build = Gauge(
            m.OPERATOR_BUILD.name + "_info",
            m.OPERATOR_BUILD.help,
            m.OPERATOR_BUILD.labels,
            registry=self.registry,
        )
        build.labels(version(), platform.python_version()).set(1)

    def reconciled(
        self, kind: str, namespace: str, name: str, status: Mapping[str, Any], seconds: float
    ) -> None:
        """One reconcile finished and left the object with `status`."""
        self.reconciles.labels(kind).inc()
        self.seconds.labels(kind).observe(seconds)
        state = object_state(kind, status)
        if state is not None:
            self.objects.objects[kind, namespace, name] = state

    def failed(self, kind: str, seconds: float) -> None:
        """One reconcile raised; the object's series keep what it last wrote."""
        self.reconciles.labels(kind).inc()
        self.errors.labels(kind).inc()
        self.seconds.labels(kind).observe(seconds)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self.objects.objects.pop((kind, namespace, name), None)

    def serve(self, host: str, port: int) -> threading.Thread:
        """Serve /metrics from a thread of its own: a scrape works while the event loop is
        busy (or wedged, which the liveness endpoint on the loop reports)."""
        server, thread = start_http_server(port, host, registry=self.registry)
        thread.name = "metrics"
        del server
        return thread
