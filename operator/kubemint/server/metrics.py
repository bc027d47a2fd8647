"""Prometheus metrics: issued tokens by grant/client/outcome, latency, failures, staleness."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tokens = Counter(
            "kubemint_tokens_total",
            "Token requests by grant type, client and outcome (issued or the OAuth error code).",
            ["grant_type", "client_id", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kubemint_token_request_seconds",
            "Token endpoint latency.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "kubemint_client_auth_failures_total",
            "Failed client authentications (including rate-limited attempts).",
            ["reason"],
            registry=self.registry,
        )
        self.forward_auth = Counter(
            "kubemint_forward_auth_total",
            "Forward-auth decisions by proxy convention and outcome (allowed or why not).",
            ["proxy", "decision"],
            registry=self.registry,
        )
        self.stale = Gauge(
            "kubemint_view_stale_seconds",
            "Seconds since the view of the Kubernetes API last had a live watch (0 = current).",
            registry=self.registry,
        )
        self.synced = Gauge(
            "kubemint_view_synced",
            "1 once the initial list of every watched resource has been loaded.",
            registry=self.registry,
        )
