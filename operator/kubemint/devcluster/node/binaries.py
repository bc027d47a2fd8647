"""Find or build the node tier's binaries: kubelet, kube-proxy, kube-scheduler, containerd (with
its runc shim and ctr) and CoreDNS.

Each comes from a Go wrapper module under `tests/node/` whose go.mod is the single record of its
version (`kube` must pin the same Kubernetes as `tests/envtest`, a unit test checks it). Like the
control plane's, they are built once into `~/.cache/kubemint/node/<key>`, the key being the
version plus a digest of the module's files, and reused afterwards. runc and the CNI plugins are
Debian's (see `packages.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubemint.devcluster import layout
from kubemint.devcluster.binaries import (
    KUBERNETES_MODULE,
    Binaries,
    BinariesError,
    GoProgram,
    Versions,
    _is_executable,
    _ldflags,
    _lock,
    build_programs,
    module_digest,
    required_version,
    resolve_binaries,
)

CONTAINERD_MODULE = "github.com/containerd/containerd/v2"
COREDNS_MODULE = "github.com/coredns/coredns"
COREDNS_MAIN = "cmd/coredns-min/main.go"  # only the plugins the node's Corefile uses


@dataclass(frozen=True)
class Build:
    """One wrapper module's programs and the cache directory they land in."""

    module: str  # directory name under tests/node/
    key: str
    programs: tuple[GoProgram, ...]


def kube_build(module_dir: Path) -> Build:
    version = required_version(module_dir / "go.mod", KUBERNETES_MODULE)
    versions = Versions(kubernetes=version, etcd="")
    programs = tuple(
        GoProgram(name, f"k8s.io/kubernetes/cmd/{name}", _ldflags(name, versions), version)
        for name in ("kubelet", "kube-proxy", "kube-scheduler")
    )
    return Build("kube", f"k8s-{version}_{module_digest(module_dir)}", programs)


def containerd_build(module_dir: Path) -> Build:
    version = required_version(module_dir / "go.mod", CONTAINERD_MODULE)
    ldflags = f"-s -w -X {CONTAINERD_MODULE}/version.Version={version}"
    programs = tuple(
        GoProgram(name, f"{CONTAINERD_MODULE}/cmd/{name}", ldflags, version, tags=("no_btrfs",))
        for name in ("containerd", "containerd-shim-runc-v2", "ctr")
    )
    return Build("containerd", f"containerd-{version}_{module_digest(module_dir)}", programs)


def coredns_build(module_dir: Path) -> Build:
    version = required_version(module_dir / "go.mod", COREDNS_MODULE)
    program = GoProgram("coredns", "./" + str(Path(COREDNS_MAIN).parent), "-s -w", version)
    key = f"coredns-{version}_{module_digest(module_dir, extra=(COREDNS_MAIN,))}"
    return Build("coredns", key, (program,))


BUILDS = {"kube": kube_build, "containerd": containerd_build, "coredns": coredns_build}


@dataclass(frozen=True)
class NodeBinaries:
    control_plane: Binaries  # etcd, kube-apiserver, kube-controller-manager, kubectl
    kubelet: Path
    kube_proxy: Path
    kube_scheduler: Path
    containerd: Path
    ctr: Path
    coredns: Path
    coredns_version: str

    @property
    def kubectl(self) -> Path:
        return self.control_plane.kubectl

    @property
    def path_dirs(self) -> tuple[Path, ...]:
        """Directories for PATH inside the sandbox (containerd finds its shim on PATH)."""
        return (self.containerd.parent,)


def resolve_node_binaries(*, build: bool = True, log: bool = True) -> NodeBinaries:
    """The control plane's binaries plus the node's, building what the cache lacks."""
    dirs: dict[str, Path] = {}
    versions: dict[str, str] = {}
    for module, describe in BUILDS.items():
        module_dir = layout.node_module_dir(module)
        if not (module_dir / "go.mod").is_file():
            raise BinariesError(f"no Go wrapper module at {module_dir}")
        spec = describe(module_dir)
        dirs[module] = _ensure(module_dir, spec, build=build, log=log)
        versions[module] = spec.programs[0].version
    kube, ctd = dirs["kube"], dirs["containerd"]
    return NodeBinaries(
        control_plane=resolve_binaries(build=build, log=log),
        kubelet=kube / "kubelet",
        kube_proxy=kube / "kube-proxy",
        kube_scheduler=kube / "kube-scheduler",
        containerd=ctd / "containerd",
        ctr=ctd / "ctr",
        coredns=dirs["coredns"] / "coredns",
        coredns_version=versions["coredns"],
    )


def _ensure(module_dir: Path, spec: Build, *, build: bool, log: bool) -> Path:
    target = layout.cache_dir() / "node" / spec.key
    if _complete(target, spec):
        return target
    if not build:
        raise BinariesError(f"node binaries are not built yet ({target})")
    with _lock(target.parent / f"{spec.module}.lock"):
        if not _complete(target, spec):
            build_programs(
                module_dir,
                target,
                spec.programs,
                what=f"the node's {spec.module}",
                alternative="KUBEMINT_CACHE_DIR to a cache that holds them",
                error=BinariesError,
                log=log,
            )
    return target


def _complete(target: Path, spec: Build) -> bool:
    return all(_is_executable(target / p.name) for p in spec.programs)
