"""Start and stop a real control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager.

The API server is configured so projected ServiceAccount tokens work end to end: TokenRequest
(`kubectl create token <sa> --audience <x>`), `/.well-known/openid-configuration` and
`/openid/v1/jwks` (readable anonymously, as relying parties fetch them). A trimmed
kube-controller-manager runs the garbage collector (ownerReferences), namespace deletion and
the `default` ServiceAccount controller. The CRDs are installed before it starts, so its
garbage collector watches the custom kinds from its first discovery sync.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from kubemint.devcluster.binaries import Binaries
from kubemint.devcluster.pki import CertPair, ControlPlanePKI, create_pki
from kubemint.devcluster.processes import ManagedProcess

SERVICE_CIDR = "10.0.0.0/24"
WORKDIR_PREFIX = "kubemint-cp-"

# Relying parties fetch OIDC discovery anonymously; Kubernetes binds the discovery role only to
# service accounts by default and leaves the wider binding to the cluster admin (us, here).
DISCOVERY_BINDING = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kubemint-dev-oidc-discovery
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:service-account-issuer-discovery
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: Group
    name: system:unauthenticated
"""


class ControlPlaneError(RuntimeError):
    """The control plane did not come up; the message carries the failing process's log tail."""


class ControlPlane:
    """A local Kubernetes control plane; a context manager that always stops what it started."""

    def __init__(
        self,
        binaries: Binaries,
        *,
        crd_paths: Sequence[Path] = (),
        controller_manager: bool = True,
        start_timeout: float = 90.0,
        workdir: Path | None = None,
        profiling: bool = False,
    ) -> None:
        self.binaries = binaries
        self.profiling = profiling  # kube-apiserver's /debug/pprof (benchmarks read it)
        self.crd_paths = list(crd_paths)
        self.controller_manager = controller_manager
        self.start_timeout = start_timeout
        self.timings: dict[str, float] = {}
        self.workdir = workdir or _make_workdir()
        self.pki: ControlPlanePKI | None = None
        self.api_port = 0
        self._processes: list[ManagedProcess] = []
        self._etcd_url = ""

    # -- addresses ---------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def issuer(self) -> str:
        """The ServiceAccount token issuer (OIDC discovery lives under it)."""
        return self.server

    @property
    def etcd_url(self) -> str:
        """etcd's client URL (plain HTTP on loopback; its /metrics are read by benchmarks)."""
        return self._etcd_url

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def _kubectl_cache(self) -> Path:
        """kubectl's discovery cache; cleared when CRDs change so new kinds are seen at once."""
        return self.workdir / "kubectl-cache"

    @property
    def ca_file(self) -> Path:
        assert self.pki is not None, "control plane not started"
        return self.pki.ca.cert

    @property
    def processes(self) -> list[ManagedProcess]:
        return list(self._processes)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        begin = time.monotonic()
        try:
            self.pki = self._create_pki()
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfig()
            self.kubectl("apply", "--server-side", "-f", "-", stdin=DISCOVERY_BINDING)
            if self.crd_paths:
                self.install_crds(self.crd_paths)
            if self.controller_manager:
                self._start_controllers()
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - begin

    def stop(self) -> None:
        """Stop every process in reverse start order and remove the working directory."""
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver only (outage tests); `start_apiserver` brings it back."""
        self._process("kube-apiserver").stop()

    def start_apiserver(self) -> None:
        """Restart kube-apiserver on the same port with the same flags and wait until ready."""
        self._process("kube-apiserver").start()
        self._wait("kube-apiserver to be ready again", self._apiserver_ready)

    def _process(self, name: str) -> ManagedProcess:
        return next(p for p in self._processes if p.name == name)

    # -- clients -----------------------------------------------------------------------------

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane; raise with its stderr when `check` fails."""
        result = subprocess.run(
            [
                str(self.binaries.kubectl),
                f"--kubeconfig={self.kubeconfig}",
                f"--cache-dir={self._kubectl_cache}",
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def get_json(self, path: str, *, admin: bool = True) -> Any:
        """GET a path on the API server (as admin, or anonymously) and decode its JSON."""
        url = self.server + path  # always https://127.0.0.1:<port>/…
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, context=self._ssl(admin=admin), timeout=10) as resp:  # noqa: S310
            return json.load(resp)

    def install_crds(self, paths: Sequence[Path]) -> None:
        """Apply CRD files or directories and wait until their kinds are served."""
        begin = time.monotonic()
        for path in paths:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        wanted = _served_resources(paths)
        for group_version, plurals in wanted.items():

            def served(gv: str = group_version, want: set[str] = plurals) -> bool:
                return want <= self._discovered(gv)

            self._wait(f"CRDs {sorted(plurals)} to be served", served)
        shutil.rmtree(self._kubectl_cache, ignore_errors=True)
        self.timings["crds"] = time.monotonic() - begin

    # -- processes ---------------------------------------------------------------------------

    # -- hooks: where the processes run and how they are configured (node/controlplane.py
    # runs the same processes inside the node's sandbox) --------------------------------------

    def _create_pki(self) -> ControlPlanePKI:
        return create_pki(self.workdir / "pki")

    def _command(self, argv: list[str]) -> list[str]:
        """The command line that runs `argv` where the control plane lives (here: as it is)."""
        return argv

    def _process_env(self) -> dict[str, str] | None:
        return None

    def _etcd_ports(self) -> tuple[int, int]:
        """etcd's client and peer ports where it listens."""
        return free_port(), free_port()

    def _apiserver_port(self) -> int:
        """kube-apiserver's secure port where it listens (`server` is how we reach it)."""
        return free_port()

    def _apiserver_network_flags(self) -> list[str]:
        # Loopback needs both: 1.37 validates the advertise address unless the
        # endpoint reconciler is off (CONTROL-PLANE.md §7.4).
        return [
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
        ]

    def _apiserver_policy_flags(self) -> list[str]:
        return [
            "--authorization-mode=RBAC",
            # No pods run here; without the SA controller the admission plugin would
            # reject objects for lack of a `default` ServiceAccount.
            "--disable-admission-plugins=ServiceAccount",
        ]

    def _service_account_flags(self) -> list[str]:
        return [
            f"--service-account-issuer={self.issuer}",
            f"--service-account-jwks-uri={self.issuer}/openid/v1/jwks",
        ]

    def _controller_manager_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            # clusterrole-aggregation: the chart's kinds join the default view/edit/admin roles.
            "--controllers=garbage-collector-controller,namespace-controller,"
            "serviceaccount-controller,clusterrole-aggregation-controller",
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            "--secure-port=0",
            "--v=0",
        ]

    def _start_controllers(self) -> None:
        self._start_controller_manager()

    # -- processes ---------------------------------------------------------------------------

    def _start_etcd(self) -> None:
        begin = time.monotonic()
        client, peer = self._etcd_ports()
        self._etcd_url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self._etcd_url}",
                f"--advertise-client-urls={self._etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",  # test data on tmpfs; durability is not the point
                "--log-level=warn",
            ],
        )
        self._wait("etcd to be healthy", lambda: _http_ok(self.etcd_url + "/health"))
        self.timings["etcd"] = time.monotonic() - begin

    def _start_apiserver(self) -> None:
        assert self.pki is not None
        begin = time.monotonic()
        self.api_port = self._apiserver_port()
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={self._etcd_url}",
                *self._apiserver_network_flags(),
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.workdir / 'certs'}",
                f"--tls-cert-file={pki.serving.cert}",
                f"--tls-private-key-file={pki.serving.key}",
                f"--client-ca-file={pki.ca.cert}",
                *self._apiserver_policy_flags(),
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                *self._service_account_flags(),
                f"--service-account-key-file={pki.sa_public_key}",
                f"--service-account-signing-key-file={pki.sa_private_key}",
                f"--enable-garbage-collector={str(self.controller_manager).lower()}",
                "--allow-privileged=true",
                f"--profiling={str(self.profiling).lower()}",
                "--v=0",
            ],
        )
        self._wait("kube-apiserver to be ready", self._apiserver_ready)
        self.timings["apiserver"] = time.monotonic() - begin

    def _start_controller_manager(self) -> None:
        begin = time.monotonic()
        self._spawn(
            "kube-controller-manager",
            [str(self.binaries.kube_controller_manager), *self._controller_manager_args()],
        )
        # The `default` ServiceAccount appearing proves the controllers are running.
        self._wait(
            "kube-controller-manager to create the default ServiceAccount",
            lambda: self._exists("/api/v1/namespaces/default/serviceaccounts/default"),
        )
        self.timings["controller-manager"] = time.monotonic() - begin

    def _spawn(self, name: str, argv: list[str]) -> None:
        process = ManagedProcess(
            name, self._command(argv), self.workdir / f"{name}.log", env=self._process_env()
        )
        self._processes.append(process)
        process.start()

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            for process in self._processes:
                if process.started and not process.alive():
                    raise ControlPlaneError(
                        f"{process.name} exited while waiting for {what}; its log ends with:\n"
                        + process.log_tail()
                    )
            if ready():
                return
            time.sleep(0.1)
        logs = "\n".join(f"--- {p.name}\n{p.log_tail(15)}" for p in self._processes)
        raise ControlPlaneError(
            f"timed out after {self.start_timeout:.0f}s waiting for {what}\n{logs}"
        )

    # -- probes ------------------------------------------------------------------------------

    def _apiserver_ready(self) -> bool:
        # /readyz turns 200 only after post-start hooks (bootstrap RBAC, CRD controllers).
        return _http_ok(self.server + "/readyz", self._ssl(admin=True))

    def _exists(self, path: str) -> bool:
        try:
            self.get_json(path)
        except (urllib.error.URLError, OSError):
            return False
        return True

    def _discovered(self, group_version: str) -> set[str]:
        try:
            listing = self.get_json(f"/apis/{group_version}")
        except (urllib.error.URLError, OSError):
            return set()
        return {r["name"] for r in listing.get("resources", []) if "/" not in r["name"]}

    def _ssl(self, *, admin: bool) -> ssl.SSLContext:
        assert self.pki is not None
        context = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        if admin:
            context.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        return context

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig authenticating as `user` (a client certificate from the cluster CA).

        The user has no rights until RBAC grants some: tests act as tenants with it."""
        assert self.pki is not None, "control plane not started"
        pair = self.pki.authority.issue_client(f"user-{user}", user, groups)
        path = self.workdir / f"kubeconfig-{user}"
        self._write_kubeconfig(path, user, pair)
        return path

    def _write_kubeconfig(
        self,
        path: Path | None = None,
        user: str = "kubemint-admin",
        pair: CertPair | None = None,
        server: str | None = None,
    ) -> None:
        assert self.pki is not None
        pair = pair or self.pki.admin
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubemint-dev",
                    "cluster": {
                        "server": server or self.server,
                        "certificate-authority-data": _b64(self.pki.ca.cert),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": _b64(pair.cert),
                        "client-key-data": _b64(pair.key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "kubemint-dev",
                    "context": {"cluster": "kubemint-dev", "user": user},
                }
            ],
            "current-context": "kubemint-dev",
        }
        path = path or self.kubeconfig
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config, sort_keys=False))


def _served_resources(paths: Sequence[Path]) -> dict[str, set[str]]:
    """group/version → plurals for every CRD document in the given files or directories."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    served: dict[str, set[str]] = {}
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served", True):
                    gv = f"{spec['group']}/{version['name']}"
                    served.setdefault(gv, set()).add(spec["names"]["plural"])
    return served


def _make_workdir() -> Path:
    """A fresh directory on tmpfs when available (etcd is much faster there).

    Directories of earlier runs whose owner process is gone (killed with SIGKILL) are removed.
    """
    shm = Path("/dev/shm")  # noqa: S108 — mkdtemp below makes a private 0700 directory
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    for stale in parent.glob(WORKDIR_PREFIX + "*"):
        with contextlib.suppress(ValueError, OSError):
            owner = int((stale / "owner.pid").read_text())
            if not _pid_alive(owner):
                shutil.rmtree(stale, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=parent))
    (workdir / "owner.pid").write_text(str(os.getpid()))
    return workdir


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
