"""Find or build the control-plane binaries: etcd, kube-apiserver, kube-controller-manager, kubectl.

Lookup follows controller-runtime's envtest convention so Go tooling can share the same
binaries: `TEST_ASSET_<NAME>` per binary, then the `KUBEBUILDER_ASSETS` directory. Otherwise
the binaries are built once with the machine's Go toolchain from the wrapper module in
`tests/envtest/` (whose go.mod is the single record of the versions) into a cache directory
keyed by those versions and the module's checksums, and reused afterwards.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kubemint.devcluster import layout

NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")

KUBERNETES_MODULE = "k8s.io/kubernetes"
ETCD_MODULE = "go.etcd.io/etcd/server/v3"
# Main packages inside the wrapper module's dependency graph, by binary name.
PACKAGES = {
    "etcd": ETCD_MODULE,
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
}


class BinariesError(RuntimeError):
    """The binaries could not be found or built; the message says what to do."""


@dataclass(frozen=True)
class Versions:
    kubernetes: str  # e.g. "v1.37.2"
    etcd: str  # e.g. "v3.7.3"


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path

    @property
    def directory(self) -> Path:
        """A directory usable as KUBEBUILDER_ASSETS when all binaries sit together."""
        return self.kube_apiserver.parent


def required_version(go_mod: Path, module: str) -> str:
    """The version of `module` a wrapper module's go.mod requires."""
    text = go_mod.read_text()
    match = re.search(rf"^\s*{re.escape(module)}\s+(v\S+)", text, re.MULTILINE)
    if not match:
        raise BinariesError(f"{go_mod} does not require {module}")
    return match.group(1)


def read_versions(go_mod: Path) -> Versions:
    """The Kubernetes and etcd versions the wrapper module requires."""
    return Versions(
        kubernetes=required_version(go_mod, KUBERNETES_MODULE),
        etcd=required_version(go_mod, ETCD_MODULE),
    )


def module_digest(module_dir: Path, extra: Sequence[str] = ()) -> str:
    """A short digest of a wrapper module's go.mod and go.sum (and any `extra` files in it)."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", *extra):
        digest.update(name.encode() + b"\0")
        digest.update((module_dir / name).read_bytes())
    return digest.hexdigest()[:12]


def cache_key(module_dir: Path) -> str:
    """Directory name for one build: readable versions plus a digest of go.mod and go.sum."""
    versions = read_versions(module_dir / "go.mod")
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((module_dir / name).read_bytes())
    return f"k8s-{versions.kubernetes}_etcd-{versions.etcd}_{digest.hexdigest()[:12]}"


def from_environment(env: Mapping[str, str]) -> Binaries | None:
    """Binaries named by TEST_ASSET_* / KUBEBUILDER_ASSETS, or None when neither is set."""
    assets = env.get("KUBEBUILDER_ASSETS")
    paths: dict[str, Path] = {}
    for name in NAMES:
        explicit = env.get("TEST_ASSET_" + name.upper().replace("-", "_"))
        if explicit:
            paths[name] = Path(explicit)
        elif assets:
            paths[name] = Path(assets) / name
    if not paths:
        return None
    missing = [name for name in NAMES if name not in paths or not _is_executable(paths[name])]
    if missing:
        where = f"KUBEBUILDER_ASSETS={assets}" if assets else "TEST_ASSET_* variables"
        raise BinariesError(f"{where} lacks executable {', '.join(missing)}")
    return _binaries(paths)


def resolve_binaries(*, build: bool = True, log: bool = True) -> Binaries:
    """Binaries from the environment, else from the cache, else built into the cache."""
    found = from_environment(os.environ)
    if found:
        return found
    module_dir = layout.envtest_module_dir()
    if not (module_dir / "go.mod").is_file():
        raise BinariesError(
            f"no Go wrapper module at {module_dir}; set KUBEBUILDER_ASSETS to a directory "
            f"holding {', '.join(NAMES)}"
        )
    target = layout.cache_dir() / "envtest" / cache_key(module_dir)
    cached = _complete(target)
    if cached or not build:
        if not cached:
            raise BinariesError(f"control-plane binaries are not built yet ({target})")
        return cached
    with _lock(target.with_suffix(".lock")):
        return _complete(target) or _build(module_dir, target, log=log)


def _build(module_dir: Path, target: Path, *, log: bool) -> Binaries:
    versions = read_versions(module_dir / "go.mod")
    programs = [
        GoProgram(name, PACKAGES[name], _ldflags(name, versions), _version_of(name, versions))
        for name in NAMES
    ]
    build_programs(
        module_dir,
        target,
        programs,
        what="the control plane",
        alternative="KUBEBUILDER_ASSETS",
        error=BinariesError,
        log=log,
    )
    built = _complete(target)
    assert built is not None, target
    return built


@dataclass(frozen=True)
class GoProgram:
    name: str  # the file name in the target directory
    package: str
    ldflags: str
    version: str
    tags: tuple[str, ...] = ()  # go build -tags


def build_programs(
    module_dir: Path,
    target: Path,
    programs: Sequence[GoProgram],
    *,
    what: str,
    alternative: str,
    error: type[Exception],
    log: bool,
) -> None:
    """`go build` each program from a wrapper module into a staging directory that becomes
    `target` only when all succeeded (a cache directory is complete or absent)."""
    go = shutil.which("go")
    if go is None:
        raise error(
            f"building {what} needs the Go toolchain (>= the go line of "
            f"{module_dir / 'go.mod'}); install Go or set {alternative}"
        )
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    started = time.monotonic()
    try:
        for program in programs:
            if log:
                print(f"kubemint: building {program.name} ({program.version})…", file=sys.stderr)
            cmd = [
                go,
                "build",
                "-trimpath",
                "-buildvcs=false",
                "-ldflags",
                program.ldflags,
                *(["-tags", ",".join(program.tags)] if program.tags else []),
                "-o",
                str(staging / program.name),
                program.package,
            ]
            result = subprocess.run(
                cmd, cwd=module_dir, env=env, capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise error(f"go build {program.package} failed:\n{result.stderr[-4000:]}")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if log:
        print(
            f"kubemint: built {what} in {time.monotonic() - started:.0f}s → {target}",
            file=sys.stderr,
        )


def _ldflags(name: str, versions: Versions) -> str:
    """Strip debug info and stamp the version `kubectl version` and /version report."""
    flags = ["-s", "-w"]
    if name != "etcd":
        major, minor = versions.kubernetes.lstrip("v").split(".")[:2]
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [
                f"-X {pkg}.gitVersion={versions.kubernetes}",
                f"-X {pkg}.gitMajor={major}",
                f"-X {pkg}.gitMinor={minor}",
                f"-X {pkg}.gitTreeState=clean",
            ]
    return " ".join(flags)


def _version_of(name: str, versions: Versions) -> str:
    return versions.etcd if name == "etcd" else versions.kubernetes


def _complete(directory: Path) -> Binaries | None:
    paths = {name: directory / name for name in NAMES}
    if all(_is_executable(p) for p in paths.values()):
        return _binaries(paths)
    return None


def _binaries(paths: Mapping[str, Path]) -> Binaries:
    return Binaries(
        etcd=paths["etcd"],
        kube_apiserver=paths["kube-apiserver"],
        kube_controller_manager=paths["kube-controller-manager"],
        kubectl=paths["kubectl"],
    )


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Serialise builds between concurrent test runs on one machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main() -> int:
    """`python -m kubemint.devcluster`: ensure the binaries exist, print their directory."""
    try:
        print(resolve_binaries().directory)
    except BinariesError as exc:
        print(f"kubemint: {exc}", file=sys.stderr)
        return 1
    return 0
