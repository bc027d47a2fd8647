"""Finding Prometheus: the pinned version, the cache key, PROMETHEUS_BINARIES."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubemint.devcluster import prometheus
from kubemint.devcluster.binaries import required_version
from kubemint.devcluster.prometheus import PrometheusError

MODULE = Path(__file__).resolve().parents[3] / "tests" / "envtest" / "prometheus"


@pytest.mark.parametrize(
    ("module", "release"), [("v0.316.0", "3.16.0"), ("v0.300.1", "3.0.1"), ("v0.54.1", "2.54.1")]
)
def test_the_go_module_version_maps_to_the_release(module: str, release: str) -> None:
    assert prometheus.release_version(module) == release


def test_the_version_comes_from_the_wrapper_module_and_keys_the_cache() -> None:
    version = required_version(MODULE / "go.mod", prometheus.PROMETHEUS_MODULE)
    release = prometheus.release_version(version)
    assert release.startswith("3.")
    assert prometheus.cache_key(MODULE).startswith(f"prometheus-{release}_")
    tools = (MODULE / "go.mod").read_text()
    for name in prometheus.NAMES:  # the module can build both
        assert f"{prometheus.PROMETHEUS_MODULE}/cmd/{name}" in tools


def test_prometheus_binaries_names_a_directory_holding_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_BINARIES", str(tmp_path))
    with pytest.raises(PrometheusError, match="lacks prometheus or promtool"):
        prometheus.resolve_prometheus(build=False)
    for name in prometheus.NAMES:
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    found = prometheus.resolve_prometheus(build=False)
    assert (found.prometheus, found.promtool) == (tmp_path / "prometheus", tmp_path / "promtool")


def test_debian_s_package_is_the_default_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_BINARIES", raising=False)
    monkeypatch.delenv(prometheus.SOURCE_ENV, raising=False)
    monkeypatch.setattr(prometheus.layout, "cache_dir", lambda: tmp_path)
    with pytest.raises(PrometheusError, match="not unpacked yet"):
        prometheus.resolve_prometheus(build=False)
    binaries = tmp_path / "prometheus" / "debian" / "usr" / "bin"
    binaries.mkdir(parents=True)
    for name in prometheus.NAMES:
        (binaries / name).write_text(f"#!/bin/sh\necho '{name}, version 2.42.0+ds (branch: d)'\n")
        (binaries / name).chmod(0o755)
    found = prometheus.resolve_prometheus(build=False)
    assert (found.prometheus, found.version) == (binaries / "prometheus", "2.42.0")
    monkeypatch.setenv(prometheus.SOURCE_ENV, "go")  # the Go build, not built here
    with pytest.raises(PrometheusError, match="not built yet"):
        prometheus.resolve_prometheus(build=False)
