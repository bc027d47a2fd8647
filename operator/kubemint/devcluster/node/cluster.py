"""A real single-node Kubernetes cluster in namespaces of its own: `NodeCluster`.

    with NodeCluster(crd_paths=[layout.crds_dir()]) as node:
        node.import_image(Path("kubemint.oci.tar"))
        node.plane.kubectl("apply", "-f", "deployment.yaml")

Start order: stale state of killed runs removed; Debian packages, binaries and images ensured;
the sandbox (sandbox.py); the host relay; containerd; the control plane (node/controlplane.py:
PKI, etcd, kube-apiserver, CRDs, kube-controller-manager, kube-scheduler); CoreDNS applied;
the images imported; cgroups created; kubelet and kube-proxy; node Ready; CoreDNS available.
`stop()`
ends the sandbox's init (the kernel then kills everything inside and drops the namespaces),
stops the host-side processes, removes the cgroup trees and the state directory.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from kubemint.devcluster.controlplane import SERVICE_CIDR, ControlPlaneError
from kubemint.devcluster.node import cgroups, cni, containerd, coredns, kubelet, packages
from kubemint.devcluster.node.binaries import NodeBinaries, resolve_node_binaries
from kubemint.devcluster.node.controlplane import NodeControlPlane
from kubemint.devcluster.node.images import NodeImages, node_images
from kubemint.devcluster.node.network import (
    CLUSTER_CIDR,
    CLUSTER_DOMAIN,
    DNS_SERVICE_IP,
    KUBELET_PORT,
    NODE_IP,
    NODE_NAME,
    POD_CIDR,
)
from kubemint.devcluster.node.sandbox import Sandbox, clean_stale, make_state_dir
from kubemint.devcluster.processes import ManagedProcess

RELAY = Path(__file__).with_name("relay.py")


class NodeError(ControlPlaneError):
    """The node did not come up; the message carries the failing component's log tail."""


class NodeCluster:
    """Control plane + one node; a context manager that always removes what it created."""

    node_name = NODE_NAME
    node_ip = NODE_IP
    service_cidr = SERVICE_CIDR
    pod_cidr = POD_CIDR
    cluster_domain = CLUSTER_DOMAIN
    dns_ip = DNS_SERVICE_IP

    def __init__(
        self,
        binaries: NodeBinaries | None = None,
        *,
        crd_paths: Sequence[Path] = (),
        start_timeout: float = 120.0,
        log: bool = True,
    ) -> None:
        self._binaries = binaries
        self.crd_paths = list(crd_paths)
        self.start_timeout = start_timeout
        self.log = log
        self.timings: dict[str, float] = {}
        self.state_dir = Path()
        self._images: NodeImages | None = None
        self._plane: NodeControlPlane | None = None
        self._sandbox: Sandbox | None = None
        self._processes: list[ManagedProcess] = []
        self._cgroup_name = ""
        self._net_namespace = ""

    # -- what callers use --------------------------------------------------------------------

    @property
    def plane(self) -> NodeControlPlane:
        assert self._plane is not None, "node not started"
        return self._plane

    @property
    def binaries(self) -> NodeBinaries:
        assert self._binaries is not None, "node not started"
        return self._binaries

    @property
    def images(self) -> NodeImages:
        """The images every node has imported: pause, coredns, busybox (names and archives)."""
        assert self._images is not None, "node not started"
        return self._images

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig for the host (through the relay on 127.0.0.1)."""
        return self.plane.kubeconfig

    @property
    def kubectl(self) -> Path:
        return self.binaries.kubectl

    @property
    def server(self) -> str:
        return self.plane.server

    @property
    def issuer(self) -> str:
        return self.plane.issuer

    @property
    def audit_log(self) -> Path:
        return self.plane.audit_log

    @property
    def cgroup_name(self) -> str:
        """The kubelet's cgroupRoot (without the leading slash), in every hierarchy."""
        return self._cgroup_name

    @property
    def net_namespace(self) -> str:
        """The sandbox's network namespace as `net:[inode]` (for leak checks)."""
        return self._net_namespace

    @property
    def sandbox_pid(self) -> int:
        """The host PID of the sandbox's init (its PID namespace dies with it)."""
        return self._sandbox.pid1 if self._sandbox else 0

    def run_in_sandbox(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a command in the node's mount, network and PID namespaces (nsenter)."""
        assert self._sandbox is not None, "node not started"
        return self._sandbox.run(argv, stdin=stdin, timeout=timeout)

    def import_image(self, oci_archive: Path) -> list[str]:
        """`ctr -n k8s.io images import` an OCI archive (streamed in: any host path works);
        returns the image names containerd now has from it. Pods use them with
        `imagePullPolicy: Never` or `IfNotPresent` (no registry is reachable)."""
        assert self._sandbox is not None, "node not started"
        result = self._sandbox.run(
            [str(self.binaries.ctr), "-n", containerd.NAMESPACE, "images", "import", "-"],
            stdin_file=Path(oci_archive),
            timeout=600,
        )
        if result.returncode != 0:
            raise NodeError(
                f"ctr images import {oci_archive} failed: {result.stderr.decode(errors='replace')}"
            )
        names = []
        for line in result.stdout.decode(errors="replace").splitlines():
            # "unpacking localhost/x/y:tag (sha256:…)...done"
            if line.startswith("unpacking "):
                names.append(line.split()[1])
        return names

    def apply(self, manifest: str) -> None:
        """`kubectl apply` YAML text as the cluster admin."""
        self.plane.kubectl("apply", "-f", "-", stdin=manifest)

    def wait_for_pod(
        self, namespace: str, name: str, *, phase: str | None = None, timeout: float = 120.0
    ) -> None:
        """Until the pod is Ready (or, with `phase`, in that phase, e.g. Succeeded). Fails at once
        when it ends in another phase, and on timeout; with the pod's description either way."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            result = self.plane.kubectl(
                "-n", namespace, "get", "pod", name, "-o", "json", check=False
            )
            if result.returncode == 0:
                status = json.loads(result.stdout).get("status", {})
                current = status.get("phase")
                ready = any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions", [])
                )
                if (phase and current == phase) or (not phase and ready):
                    return
                if current in ("Succeeded", "Failed") and current != phase:
                    break
            time.sleep(0.25)
        described = self.plane.kubectl("-n", namespace, "describe", "pod", name, check=False)
        logs = self.plane.kubectl("-n", namespace, "logs", name, "--all-containers", check=False)
        raise NodeError(
            f"pod {namespace}/{name} not {phase or 'Ready'} (phase {status.get('phase')}):\n"
            f"{described.stdout[-3000:]}\n--- logs\n{logs.stdout[-2000:]}{logs.stderr[-500:]}"
        )

    def wait_for_service_account(self, namespace: str, name: str, timeout: float = 60.0) -> None:
        """ServiceAccount admission rejects pods until the controller created their SA."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.plane.kubectl("-n", namespace, "get", "sa", name, check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise NodeError(f"ServiceAccount {namespace}/{name} did not appear")

    @property
    def processes(self) -> list[ManagedProcess]:
        """Every long-running process (control plane, node agents, relay)."""
        return [*self.plane.processes, *self._processes]

    def logs(self) -> dict[str, Path]:
        """Every component's log file, by name."""
        return {p.name: p.log_path for p in self.processes}

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> NodeCluster:
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
            self._start(begin)
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - begin

    def _mark(self, what: str, begin: float) -> None:
        self.timings[what] = round(time.monotonic() - begin, 2)

    def _start(self, begin: float) -> None:
        clean_stale()
        packages.ensure_packages()
        if self._binaries is None:
            self._binaries = resolve_node_binaries(log=self.log)
        binaries = self._binaries
        self._images = images = node_images(binaries)
        self._mark("prepared", begin)

        self.state_dir = make_state_dir()
        self._cgroup_name = self.state_dir.name
        (self.state_dir / "logs").mkdir()
        config = self._write_configs(images)

        self._sandbox = sandbox = Sandbox(self.state_dir, binaries.path_dirs)
        sandbox.start()
        self._net_namespace = sandbox.net_namespace()
        self._mark("sandbox", begin)

        api_listener, etcd_listener = _listener(), _listener()
        try:
            self._plane = NodeControlPlane(
                binaries.control_plane,
                sandbox,
                self.state_dir / "control-plane",
                scheduler=binaries.kube_scheduler,
                host_api_port=api_listener.getsockname()[1],
                host_etcd_port=etcd_listener.getsockname()[1],
                crd_paths=self.crd_paths,
                start_timeout=self.start_timeout,
            )
            relay = [sys.executable, "-I", str(RELAY)]
            relay += [f"{api_listener.fileno()}:6443", f"{etcd_listener.fileno()}:2379"]
            self._spawn(
                "relay",
                sandbox.command(relay, pid=False),
                pass_fds=(api_listener.fileno(), etcd_listener.fileno()),
            )
        finally:
            api_listener.close()  # the relay holds its own copies
            etcd_listener.close()
        self._spawn("containerd", sandbox.command([str(binaries.containerd), f"--config={config}"]))

        self.plane.start()
        self._mark("control plane", begin)
        # CoreDNS now: its pod is created while the node comes up and starts once it is Ready.
        self.plane.kubectl(
            "apply",
            "--server-side",
            "-f",
            "-",
            stdin=coredns.render_manifests(
                image=images.coredns.name, service_ip=DNS_SERVICE_IP, cluster_domain=CLUSTER_DOMAIN
            ),
        )

        self._wait("containerd to answer", self._containerd_ready)
        for image in (images.pause, images.coredns, images.busybox):
            self.import_image(image.archive)
        self._mark("images imported", begin)

        cgroups.create(self._cgroup_name)
        self._start_node_agents()
        self._wait(f"node {NODE_NAME} to be Ready", self._node_ready)
        self._mark("node Ready", begin)

        self._wait("CoreDNS to be available", self._coredns_available)
        self._mark("CoreDNS available", begin)

    def _write_configs(self, images: NodeImages) -> Path:
        cni_dir = self.state_dir / "cni"
        cni_dir.mkdir()
        (cni_dir / "10-kubemint.conflist").write_text(cni.render_conflist(POD_CIDR))
        path = self.state_dir / "containerd.toml"
        path.write_text(
            containerd.render_config(
                pause_image=images.pause.name,
                cni_conf_dir=cni_dir,
                cni_bin_dir=packages.CNI_BIN_DIR,
                runc=packages.RUNC,
            )
        )
        (self.state_dir / "resolv.conf").write_text("")
        return path

    def _start_node_agents(self) -> None:
        plane, sandbox = self.plane, self._sandbox
        assert sandbox is not None
        assert plane.pki is not None
        assert plane.credentials is not None
        creds = plane.credentials
        settings = kubelet.KubeletSettings(
            node_name=NODE_NAME,
            node_ip=NODE_IP,
            port=KUBELET_PORT,
            cgroup_root="/" + self._cgroup_name,
            ca_file=plane.pki.ca.cert,
            serving_cert=creds.kubelet_serving.cert,
            serving_key=creds.kubelet_serving.key,
            cluster_dns=DNS_SERVICE_IP,
            cluster_domain=CLUSTER_DOMAIN,
            resolv_conf=self.state_dir / "resolv.conf",
            container_runtime_endpoint=f"unix://{containerd.SOCKET}",
        )
        kubelet_yaml = self.state_dir / "kubelet.yaml"
        kubelet_yaml.write_text(kubelet.dump(kubelet.kubelet_config(settings)))
        proxy_yaml = self.state_dir / "kube-proxy.yaml"
        proxy_yaml.write_text(
            kubelet.dump(
                kubelet.kube_proxy_config(
                    kubeconfig=creds.kube_proxy, node_name=NODE_NAME, cluster_cidr=CLUSTER_CIDR
                )
            )
        )
        self._spawn(
            "kubelet",
            sandbox.command(
                [
                    str(self.binaries.kubelet),
                    f"--config={kubelet_yaml}",
                    f"--kubeconfig={creds.kubelet}",
                    f"--hostname-override={NODE_NAME}",
                    f"--node-ip={NODE_IP}",
                    "--v=1",
                ]
            ),
        )
        self._spawn(
            "kube-proxy",
            sandbox.command([str(self.binaries.kube_proxy), f"--config={proxy_yaml}", "--v=1"]),
        )

    def stop(self) -> None:
        """End everything, leaf-first where the kernel does not: sandbox, host processes,
        cgroups, state. Safe to call twice and after a failed start."""
        if self._sandbox is not None:
            self._sandbox.stop()
        if self._plane is not None:
            self._plane.stop()  # its processes died with the sandbox; this reaps them
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        if self._cgroup_name:
            left = cgroups.remove(self._cgroup_name)
            if left:
                print(f"kubemint: cgroups still busy: {left}", file=sys.stderr)
        if self.state_dir != Path() and self.state_dir.exists():
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], pass_fds: Sequence[int] = ()) -> None:
        assert self._sandbox is not None
        process = ManagedProcess(
            name,
            argv,
            self.state_dir / "logs" / f"{name}.log",
            env=self._sandbox.env(),
            pass_fds=pass_fds,
        )
        self._processes.append(process)
        process.start()

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            for process in [*self._processes, *self.plane.processes]:
                if process.started and not process.alive():
                    raise NodeError(
                        f"{process.name} exited while waiting for {what}; its log ends with:\n"
                        + process.log_tail()
                    )
            if ready():
                return
            time.sleep(0.2)
        logs = "\n".join(f"--- {p.name}\n{p.log_tail(15)}" for p in self._processes)
        raise NodeError(f"timed out after {self.start_timeout:.0f}s waiting for {what}\n{logs}")

    def _containerd_ready(self) -> bool:
        assert self._sandbox is not None
        return self._sandbox.run([str(self.binaries.ctr), "version"], timeout=10).returncode == 0

    def _node_ready(self) -> bool:
        result = self.plane.kubectl(
            "get",
            "node",
            NODE_NAME,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            check=False,
        )
        return result.stdout.strip() == "True"

    def _coredns_available(self) -> bool:
        result = self.plane.kubectl(
            "-n",
            "kube-system",
            "get",
            "deployment",
            "coredns",
            "-o",
            "jsonpath={.status.availableReplicas}",
            check=False,
        )
        return result.stdout.strip() == "1"


def _listener() -> socket.socket:
    """A listening socket on a free port of the host's loopback, handed to the relay."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
