"""Prometheus metrics: token requests by grant and outcome, latency, failures, staleness,
the view's rebuilds and skipped objects, and CEL conditions that could not be evaluated.

Every label value is from the server's own small vocabulary (grant types it supports, OAuth
error codes, decision reasons, kinds, sandbox refusal reasons), never from a request, and no
label names a client: /metrics answers anyone who can reach the Service (every tenant's pods
can), so a client id there would tell each tenant which namespaces and clients the others
have, and a label per client grows with the cluster. Per-client activity is in the audit log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

KINDS = ("OAuth2Client", "ServiceAccount", "AccessRule", "SigningKey", "TrustedIssuer")


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
        self.rebuild_failures = Counter(
            "kubemint_view_rebuild_failures",
            "Rebuilds of the view that failed (the previous view was kept; /readyz says 503).",
            registry=self.registry,
        )
        self.last_rebuild = Gauge(
            "kubemint_view_last_rebuild_success_timestamp_seconds",
            "Unix time of the last successful rebuild of the view (0: none yet).",
            registry=self.registry,
        )
        self.updates = Counter(
            "kubemint_view_updates",
            "Successful updates of the view (each publishes a new snapshot).",
            registry=self.registry,
        )
        self.update_seconds = Counter(
            "kubemint_view_update_work_seconds",
            "CPU seconds spent building the view's updates (its builder thread, off the loop).",
            registry=self.registry,
        )
        self.last_update = Gauge(
            "kubemint_view_last_update_work_seconds",
            "CPU seconds the latest update of the view took to build.",
            registry=self.registry,
        )
        self.skipped = Gauge(
            "kubemint_view_objects_skipped",
            "Objects left out of the view because they could not be read (see their status).",
            ["kind"],
            registry=self.registry,
        )
        self.conditions_unavailable = Counter(
            "kubemint_conditions_unavailable",
            "CEL conditions not evaluated within their budget (timeout, busy, or quarantined):"
            " the request was refused with temporarily_unavailable.",
            ["reason"],
            registry=self.registry,
        )
        self.issuer_fetch_failures = Counter(
            "kubemint_issuer_key_fetch_failures",
            "Failed fetches of issuers' keys (jwksUri or the cluster's), by reason; the log"
            " names the source. The last good keys are kept.",
            ["reason"],
            registry=self.registry,
        )
        self.issuer_sources = Gauge(
            "kubemint_issuer_key_sources",
            "Issuer key sources by state: ok, failing (last fetch failed), pending (never"
            " fetched yet).",
            ["state"],
            registry=self.registry,
        )
        self._issuer_failures_seen: dict[str, int] = {}
        # Label children resolved once per (grant type, outcome): both come from the small
        # vocabulary above, so this stays as small as the metric itself.
        self._token_outcomes: dict[tuple[str, str], Any] = {}
        self._rebuild_failures_seen = 0
        self._updates_seen = (0, 0.0)
        self._unavailable_seen: dict[str, int] = {}

    def token_outcome(self, grant_type: str, outcome: str) -> None:
        """Count one token request (kubemint_tokens_total{grant_type, outcome})."""
        child = self._token_outcomes.get((grant_type, outcome))
        if child is None:
            child = self._token_outcomes[grant_type, outcome] = self.tokens.labels(
                grant_type, outcome
            )
        child.inc()

    def observe_view(
        self,
        failures: int,
        last_success: float,
        skipped: Mapping[str, int],
        updates: tuple[int, float, float] = (0, 0.0, 0.0),
    ) -> None:
        """Copy the view's rebuild statistics in, at scrape time. `updates`: how many
        succeeded, the seconds they took in total, and the latest one's."""
        count, seconds, last = updates
        seen_count, seen_seconds = self._updates_seen
        if count > seen_count:
            self.updates.inc(count - seen_count)
            self.update_seconds.inc(max(seconds - seen_seconds, 0.0))
            self._updates_seen = (count, seconds)
        self.last_update.set(last)
        if failures > self._rebuild_failures_seen:
            self.rebuild_failures.inc(failures - self._rebuild_failures_seen)
            self._rebuild_failures_seen = failures
        self.last_rebuild.set(last_success)
        for kind in KINDS:
            self.skipped.labels(kind).set(skipped.get(kind, 0))

    def observe_conditions(self, unavailable: Mapping[str, int]) -> None:
        """Copy the sandbox's refusals in, at scrape time."""
        for reason, count in unavailable.items():
            seen = self._unavailable_seen.get(reason, 0)
            if count > seen:
                self.conditions_unavailable.labels(reason).inc(count - seen)
                self._unavailable_seen[reason] = count

    def observe_issuer_keys(self, failures: Mapping[str, int], states: Mapping[str, int]) -> None:
        """Copy the issuer key sources' failures and states in, at scrape time."""
        for reason, count in dict(failures).items():
            seen = self._issuer_failures_seen.get(reason, 0)
            if count > seen:
                self.issuer_fetch_failures.labels(reason).inc(count - seen)
                self._issuer_failures_seen[reason] = count
        for state in ("ok", "failing", "pending"):
            self.issuer_sources.labels(state).set(states.get(state, 0))
