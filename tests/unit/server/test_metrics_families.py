"""The token server's registry: the families metric_names declares, the process's own
series, and no `_created` series."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kubemint.api import metric_names as m
from kubemint.server.metrics import Metrics


def test_the_registry_exports_what_metric_names_declares_and_the_process_series() -> None:
    metrics = Metrics()
    metrics.token_outcome("client_credentials", "issued")
    metrics.latency.observe(0.002)
    metrics.auth_failures.labels("bad_secret").inc()
    metrics.claims_refused.labels("namespace").inc()
    metrics.forward_auth.labels("nginx", "allowed").inc()
    metrics.observe_view(1, 1.0, {"OAuth2Client": 1}, (1, 0.1, 0.1))
    metrics.observe_conditions({"timeout": 1})
    metrics.observe_issuer_keys({"timeout": 1}, {"ok": 1})
    metrics.signed("kid-1", 2e9)
    metrics.observe_signed(1e9)
    text = generate_latest(metrics.registry).decode()
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}

    declared = {sample for metric in m.TOKEN_SERVER for sample in metric.samples}
    assert {n for n in names if n.startswith("kubemint_")} == declared
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= names
    assert "python_info" in names
    assert any(n.startswith("python_gc_") for n in names)
    assert not [n for n in names if n.endswith("_created")]


def test_both_claim_budgets_are_exported_at_zero_before_any_refusal() -> None:
    """So that rate() sees the first refusals (the alert reads this counter)."""
    metrics = Metrics()
    registry = metrics.registry
    name = "kubemint_assertion_claims_refused_total"
    assert registry.get_sample_value(name, {"budget": "client"}) == 0
    assert registry.get_sample_value(name, {"budget": "namespace"}) == 0
    metrics.claims_refused.labels("namespace").inc()
    assert registry.get_sample_value(name, {"budget": "namespace"}) == 1
