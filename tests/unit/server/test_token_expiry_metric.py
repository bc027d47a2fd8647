"""kubemint_signing_key_token_expiry_timestamp_seconds: per kid, the latest expiry of the
tokens this replica signed, until it has passed."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kubemint.api import metric_names as m
from kubemint.server.metrics import Metrics


def expiries(metrics: Metrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        s.labels["kid"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == m.SIGNING_KEY_TOKEN_EXPIRY.name
    }


def test_each_kid_shows_the_latest_expiry_of_the_tokens_it_signed() -> None:
    metrics = Metrics()
    metrics.signed("a", 2000.0)
    metrics.signed("a", 1500.0)  # a shorter-lived token later: the longest still counts
    metrics.signed("b", 1200.0)
    metrics.signed("", 9000.0)  # no key signed (nothing issued): not a series
    metrics.observe_signed(now=1000.0)
    assert expiries(metrics) == {"a": 2000.0, "b": 1200.0}


def test_a_kid_goes_once_its_last_token_has_expired() -> None:
    metrics = Metrics()
    metrics.signed("a", 2000.0)
    metrics.signed("b", 1200.0)
    metrics.observe_signed(now=1000.0)
    metrics.observe_signed(now=1300.0)
    assert expiries(metrics) == {"a": 2000.0}
    metrics.signed("b", 1900.0)  # a kid seen again comes back
    metrics.observe_signed(now=1300.0)
    assert expiries(metrics) == {"a": 2000.0, "b": 1900.0}
