"""Find or build the `helm` binary the chart tests use.

`HELM` names a binary to use as it is. Otherwise helm is built once with the machine's Go
toolchain from the wrapper module in `tests/envtest/helm/` (whose go.mod is the single record
of the helm version) into a cache directory keyed by that version and the module's checksums,
and reused afterwards, the same way `binaries.py` builds the control plane.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from kubemint.devcluster import layout
from kubemint.devcluster.binaries import GoProgram, _is_executable, _lock, build_programs

HELM_MODULE = "helm.sh/helm/v3"
CLIENT_GO_MODULE = "k8s.io/client-go"
PACKAGE = "helm.sh/helm/v3/cmd/helm"


class HelmError(RuntimeError):
    """helm could not be found or built; the message says what to do."""


def module_dir() -> Path:
    """The Go wrapper module that pins and builds helm."""
    override = os.environ.get("KUBEMINT_HELM_MODULE")
    return Path(override) if override else layout.envtest_module_dir() / "helm"


def read_version(go_mod: Path, module: str = HELM_MODULE) -> str:
    """The version of `module` (by default helm) the wrapper module requires, e.g. "v3.22.0"."""
    text = go_mod.read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.MULTILINE)
    if not match:
        raise HelmError(f"{go_mod} does not require {module}")
    return match.group(1)


def cache_key(directory: Path) -> str:
    """Directory name for one build: the readable version plus a digest of go.mod and go.sum."""
    version = read_version(directory / "go.mod")
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((directory / name).read_bytes())
    return f"helm-{version}_{digest.hexdigest()[:12]}"


def from_environment(env: Mapping[str, str]) -> Path | None:
    """The binary named by HELM, or None when it is not set."""
    explicit = env.get("HELM")
    if not explicit:
        return None
    path = Path(explicit)
    if not _is_executable(path):
        found = shutil.which(explicit)
        if found is None:
            raise HelmError(f"HELM={explicit} is not an executable")
        path = Path(found)
    return path


def resolve_helm(*, build: bool = True, log: bool = True) -> Path:
    """helm from HELM, else from the cache, else built into the cache."""
    found = from_environment(os.environ)
    if found:
        return found
    directory = module_dir()
    if not (directory / "go.mod").is_file():
        raise HelmError(f"no Go wrapper module at {directory}; set HELM to a helm v3 binary")
    target = layout.cache_dir() / "helm" / cache_key(directory)
    binary = target / "helm"
    if _is_executable(binary):
        return binary
    if not build:
        raise HelmError(f"helm is not built yet ({target})")
    with _lock(target.with_suffix(".lock")):
        if _is_executable(binary):
            return binary
        return _build(directory, target, log=log)


def _build(directory: Path, target: Path, *, log: bool) -> Path:
    version = read_version(directory / "go.mod")
    client_go = read_version(directory / "go.mod", CLIENT_GO_MODULE)
    program = GoProgram("helm", PACKAGE, _ldflags(version, client_go), version)
    build_programs(
        directory, target, [program], what="helm", alternative="HELM", error=HelmError, log=log
    )
    return target / "helm"


def _ldflags(version: str, client_go: str) -> str:
    """Strip debug info, stamp the version `helm version` reports and, as helm's Makefile does,
    the Kubernetes version `helm template` and `helm lint` assume (client-go v0.X.Y → 1.X);
    unstamped, helm assumes 1.20 and rejects charts that need a newer one."""
    pkg = "helm.sh/helm/v3/internal/version"
    minor = client_go.lstrip("v").split(".")[1]
    flags = ["-s", "-w", f"-X {pkg}.version={version}", f"-X {pkg}.gitTreeState=clean"]
    for kube in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
        flags += [f"-X {kube}.k8sVersionMajor=1", f"-X {kube}.k8sVersionMinor={minor}"]
    return " ".join(flags)
