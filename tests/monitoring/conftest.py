"""Fixtures for the monitoring tests: Prometheus's binaries, built once from
tests/envtest/prometheus."""

from __future__ import annotations

import pytest

from kubemint.devcluster.prometheus import PrometheusBinaries, resolve_prometheus


@pytest.fixture(scope="session")
def prometheus_binaries() -> PrometheusBinaries:
    """promtool and prometheus from $PROMETHEUS_BINARIES or the cache (built on first use)."""
    return resolve_prometheus()
