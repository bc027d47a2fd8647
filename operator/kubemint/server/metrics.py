"""Prometheus metrics: token requests by grant and outcome, latency, failures, staleness.

Every label value is from the server's own small vocabulary (grant types it supports, OAuth
error codes, decision reasons), never from a request, and no label names a client: /metrics
answers anyone who can reach the Service (every tenant's pods can), so a client id there
would tell each tenant which namespaces and clients the others have, and a label per client
grows with the cluster. Per-client activity is in the audit log.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tokens = Counter(
            "kubemint_tokens_total",
            "Token requests by grant type and outcome (issued or the OAuth error code).",
            ["grant_type", "outcome"],
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
