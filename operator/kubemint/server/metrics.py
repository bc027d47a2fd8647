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

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from kubemint.api import metric_names as m
from kubemint.store.assertion_jtis import BUDGETS

KINDS = ("OAuth2Client", "ServiceAccount", "AccessRule", "SigningKey", "TrustedIssuer")


def _family(metric: m.Metric) -> tuple[str, str, tuple[str, ...]]:
    return metric.name, metric.help, metric.labels


class Metrics:
    def __init__(self) -> None:
        # No *_created series (a process-wide switch in prometheus_client): nothing queries
        # them, and they add a series per counter and histogram child.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        # The process's own series (CPU, RSS, open fds, GC), as the default registry has them.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.tokens = Counter(*_family(m.TOKENS), registry=self.registry)
        self.latency = Histogram(
            *_family(m.TOKEN_SECONDS), buckets=m.TOKEN_BUCKETS, registry=self.registry
        )
        self.auth_failures = Counter(*_family(m.CLIENT_AUTH_FAILURES), registry=self.registry)
        self.claims_refused = Counter(*_family(m.ASSERTION_CLAIMS_REFUSED), registry=self.registry)
        # Both budgets' series exist from the start, at 0: a series that first appears at 1
        # counts nothing in rate() and increase(), so the first refusals would go unseen by
        # KubemintAssertionClaimsRefused.
        for budget in BUDGETS:
            self.claims_refused.labels(budget)
        self.forward_auth = Counter(*_family(m.FORWARD_AUTH), registry=self.registry)
        self.stale = Gauge(*_family(m.VIEW_STALE), registry=self.registry)
        self.synced = Gauge(*_family(m.VIEW_SYNCED), registry=self.registry)
        self.rebuild_failures = Counter(*_family(m.VIEW_REBUILD_FAILURES), registry=self.registry)
        self.last_rebuild = Gauge(*_family(m.VIEW_LAST_REBUILD), registry=self.registry)
        self.updates = Counter(*_family(m.VIEW_UPDATES), registry=self.registry)
        self.update_seconds = Counter(*_family(m.VIEW_UPDATE_SECONDS), registry=self.registry)
        self.last_update = Gauge(*_family(m.VIEW_LAST_UPDATE_SECONDS), registry=self.registry)
        self.skipped = Gauge(*_family(m.VIEW_SKIPPED), registry=self.registry)
        self.conditions_unavailable = Counter(
            *_family(m.CONDITIONS_UNAVAILABLE), registry=self.registry
        )
        self.issuer_fetch_failures = Counter(
            *_family(m.ISSUER_FETCH_FAILURES), registry=self.registry
        )
        self.issuer_sources = Gauge(*_family(m.ISSUER_SOURCES), registry=self.registry)
        self.token_expiry = Gauge(*_family(m.SIGNING_KEY_TOKEN_EXPIRY), registry=self.registry)
        # kid → the latest expiry of a token signed with it; copied into the gauge at scrape
        # time, so issuing a token costs one dict lookup. Kids are the server's own keys.
        self._signed_until: dict[str, float] = {}
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

    def signed(self, kid: str, expires_at: float) -> None:
        """A token signed with `kid` was issued, valid until `expires_at` (Unix time)."""
        if kid and expires_at > self._signed_until.get(kid, 0.0):
            self._signed_until[kid] = expires_at

    def observe_signed(self, now: float) -> None:
        """Copy the signing keys' latest token expiries in, at scrape time, dropping kids
        whose tokens have all expired."""
        for kid, until in list(self._signed_until.items()):
            if until > now:
                self.token_expiry.labels(kid).set(until)
            else:
                del self._signed_until[kid]
                self.token_expiry.remove(kid)

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
