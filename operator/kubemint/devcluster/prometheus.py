"""Find Prometheus (`prometheus` and `promtool`) for the monitoring tests.

`promtool` checks and unit-tests the chart's alerting rules; `prometheus` scrapes the real
operator and token server so every dashboard query and alert expression is evaluated.

By default both come from Debian's `prometheus` package, downloaded and unpacked (not
installed) into `~/.cache/kubemint/prometheus/debian`: seconds on a new machine, where building
them from Go takes many minutes of CI's cold budget (57 min measured on the loaded 2-core
machine). `KUBEMINT_PROMETHEUS_SOURCE=go` (or a machine without apt) builds them instead from
the Go wrapper module in `tests/envtest/prometheus/`, whose go.mod records that version, once
into `~/.cache/kubemint/prometheus/<key>` (the version plus a digest of the module's files), the
way `binaries.py` builds the control plane; that build leaves out every service-discovery
plugin (`remove_all_sd`: the tests use static targets) and the web UI's assets. The rules and
the tests hold for both. `PROMETHEUS_BINARIES` names a directory holding both instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kubemint.devcluster import debian, layout
from kubemint.devcluster.binaries import (
    GoProgram,
    _is_executable,
    _lock,
    build_programs,
    module_digest,
    required_version,
)

PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
NAMES = ("prometheus", "promtool")
TAGS = ("remove_all_sd",)
SOURCE_ENV = "KUBEMINT_PROMETHEUS_SOURCE"
"""`debian` (the default: Debian's package, unpacked) or `go` (built from the wrapper module,
the newest release; minutes on a new machine)."""


class PrometheusError(RuntimeError):
    """Prometheus could not be found or built; the message says what to do."""


@dataclass(frozen=True)
class PrometheusBinaries:
    prometheus: Path
    promtool: Path
    version: str  # e.g. "3.16.0", what `prometheus --version` reports


def module_dir() -> Path:
    """The Go wrapper module that pins and builds Prometheus."""
    override = os.environ.get("KUBEMINT_PROMETHEUS_MODULE")
    return Path(override) if override else layout.envtest_module_dir() / "prometheus"


def release_version(module_version: str) -> str:
    """Prometheus publishes Go module v0.<minor>.<patch>: v0.3XX.Y is release 3.XX.Y, and
    v0.XX.Y was 2.XX.Y."""
    _, minor, patch = [*module_version.lstrip("v").split("."), "", ""][:3]
    if not (minor.isdigit() and patch.isdigit()):
        return module_version.lstrip("v")
    if int(minor) >= 300:
        return f"3.{int(minor) - 300}.{patch}"
    return f"2.{minor}.{patch}"


def cache_key(directory: Path) -> str:
    version = required_version(directory / "go.mod", PROMETHEUS_MODULE)
    return f"prometheus-{release_version(version)}_{module_digest(directory)}"


def resolve_prometheus(*, build: bool = True, log: bool = True) -> PrometheusBinaries:
    """Prometheus from PROMETHEUS_BINARIES, else from the cache, else built into the cache."""
    directory = module_dir()
    if not (directory / "go.mod").is_file():
        raise PrometheusError(
            f"no Go wrapper module at {directory}; set PROMETHEUS_BINARIES to a directory "
            "holding prometheus and promtool"
        )
    version = release_version(required_version(directory / "go.mod", PROMETHEUS_MODULE))
    explicit = os.environ.get("PROMETHEUS_BINARIES")
    if explicit:
        found = _complete(Path(explicit), version)
        if found is None:
            raise PrometheusError(f"PROMETHEUS_BINARIES={explicit} lacks prometheus or promtool")
        return found
    if os.environ.get(SOURCE_ENV, "debian") == "debian":
        try:
            debian_found = _from_debian(fetch=build)
        except PrometheusError as exc:  # not a Debian machine: build it instead
            if log:
                print(f"kubemint: {exc}; building Prometheus from Go instead", file=sys.stderr)
        else:
            if debian_found is not None or not build:
                if debian_found is None:
                    raise PrometheusError("Prometheus is not unpacked yet (Debian's package)")
                return debian_found
    target = layout.cache_dir() / "prometheus" / cache_key(directory)
    found = _complete(target, version)
    if found is not None:
        return found
    if not build:
        raise PrometheusError(f"Prometheus is not built yet ({target})")
    with _lock(target.parent / "prometheus.lock"):
        if _complete(target, version) is None:
            _build(directory, target, version, log=log)
    built = _complete(target, version)
    assert built is not None, target
    return built


def _build(directory: Path, target: Path, version: str, *, log: bool) -> None:
    module_version = required_version(directory / "go.mod", PROMETHEUS_MODULE)
    # The version `prometheus --version` and /api/v1/status/buildinfo report.
    ldflags = f"-s -w -X github.com/prometheus/common/version.Version={version}"
    programs = [
        GoProgram(name, f"{PROMETHEUS_MODULE}/cmd/{name}", ldflags, module_version, tags=TAGS)
        for name in NAMES
    ]
    build_programs(
        directory,
        target,
        programs,
        what="Prometheus",
        alternative="PROMETHEUS_BINARIES",
        error=PrometheusError,
        log=log,
    )


def _from_debian(*, fetch: bool) -> PrometheusBinaries | None:
    """Debian's `prometheus` package (prometheus and promtool), unpacked into the cache: a
    download of seconds where the Go build takes many minutes on a new machine (CI's cold
    budget). Not installed: no service starts, nothing lands outside the cache."""
    target = layout.cache_dir() / "prometheus" / "debian"
    binaries = target / "usr" / "bin"
    if not all(_is_executable(binaries / name) for name in NAMES):
        if not fetch:
            return None
        with _lock(target.parent / "prometheus.lock"):
            if not all(_is_executable(binaries / name) for name in NAMES):
                debian.unpack("prometheus", target, error=PrometheusError)
    found = _complete(binaries, _reported_version(binaries / "prometheus"))
    if found is None:
        raise PrometheusError(f"Debian's prometheus package has no {' or '.join(NAMES)}")
    return found


def _reported_version(binary: Path) -> str:
    """`prometheus --version`'s first line: "prometheus, version 2.42.0+ds (branch: …)"."""
    result = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    words = (result.stdout or result.stderr).split()
    return words[2].split("+")[0] if len(words) > 2 and words[1] == "version" else "unknown"


def _complete(directory: Path, version: str) -> PrometheusBinaries | None:
    paths = [directory / name for name in NAMES]
    if all(_is_executable(p) for p in paths):
        return PrometheusBinaries(prometheus=paths[0], promtool=paths[1], version=version)
    return None


def main() -> int:
    """`python -m kubemint.devcluster.prometheus`: ensure both binaries exist, print them."""
    try:
        found = resolve_prometheus()
    except PrometheusError as exc:
        print(f"kubemint: {exc}", file=sys.stderr)
        return 1
    print(f"{found.prometheus}\n{found.promtool}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
