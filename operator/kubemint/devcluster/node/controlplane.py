"""The node tier's control plane: the same ControlPlane (etcd, kube-apiserver,
kube-controller-manager, same PKI module), run inside the sandbox and configured for a node.

Differences from the host-only control plane, each because a real node needs it:
- it listens inside the sandbox (0.0.0.0:6443, advertised on the node IP, so the `kubernetes`
  Service has an endpoint pods can reach); the host reaches it, and etcd, through the relay;
- authorization Node,RBAC with NodeRestriction, and ServiceAccount admission on (pods need it);
- the ServiceAccount issuer is the in-cluster name `https://kubernetes.default.svc.<domain>`;
- every controller runs, with per-controller ServiceAccount credentials; kube-scheduler runs too;
- audit logging at Metadata level into the state directory (tests scan it for 403s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kubemint.devcluster.binaries import Binaries
from kubemint.devcluster.controlplane import SERVICE_CIDR, ControlPlane
from kubemint.devcluster.node.network import (
    APISERVER_PORT,
    CLUSTER_DOMAIN,
    ETCD_PORTS,
    ISSUER,
    KUBERNETES_SERVICE_IP,
    NODE_IP,
    NODE_NAME,
)
from kubemint.devcluster.node.sandbox import Sandbox
from kubemint.devcluster.pki import CertPair, ControlPlanePKI, create_pki

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""


@dataclass(frozen=True)
class NodeCredentials:
    """Client identities of the node's components and the kubelet's serving certificate."""

    kubelet: Path  # kubeconfig, system:node:<name> in system:nodes (NodeRestriction applies)
    kube_proxy: Path  # system:kube-proxy (bound to system:node-proxier by default)
    scheduler: Path  # system:kube-scheduler
    controller_manager: Path  # system:kube-controller-manager
    kubelet_serving: CertPair
    apiserver_kubelet_client: CertPair


class NodeControlPlane(ControlPlane):
    def __init__(
        self,
        binaries: Binaries,
        sandbox: Sandbox,
        workdir: Path,
        *,
        scheduler: Path,
        host_api_port: int,
        host_etcd_port: int,
        crd_paths: Sequence[Path] = (),
        start_timeout: float = 120.0,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            binaries, crd_paths=crd_paths, start_timeout=start_timeout, workdir=workdir
        )
        self.sandbox = sandbox
        self.scheduler = scheduler
        self.host_api_port = host_api_port
        self.host_etcd_port = host_etcd_port
        self.credentials: NodeCredentials | None = None

    @property
    def server(self) -> str:
        """The API server as the host reaches it (the relay on 127.0.0.1)."""
        return f"https://127.0.0.1:{self.host_api_port}"

    @property
    def inner_server(self) -> str:
        """The API server as processes inside the sandbox reach it."""
        return f"https://127.0.0.1:{APISERVER_PORT}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.host_etcd_port}"

    @property
    def issuer(self) -> str:
        return ISSUER

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    # -- ControlPlane hooks ------------------------------------------------------------------

    def _create_pki(self) -> ControlPlanePKI:
        pki = create_pki(
            self.workdir / "pki",
            extra_names=(f"kubernetes.default.svc.{CLUSTER_DOMAIN}",),
            extra_ips=(NODE_IP, KUBERNETES_SERVICE_IP),
        )
        self.pki = pki
        ca = pki.authority
        kubeconfigs = {}
        for stem, user, groups in (
            ("kubelet", f"system:node:{NODE_NAME}", ["system:nodes"]),
            ("kube-proxy", "system:kube-proxy", []),
            ("scheduler", "system:kube-scheduler", []),
            ("controller-manager", "system:kube-controller-manager", []),
        ):
            path = self.workdir / f"{stem}.kubeconfig"
            self._write_kubeconfig(
                path, user, ca.issue_client(stem, user, groups), self.inner_server
            )
            kubeconfigs[stem] = path
        self.credentials = NodeCredentials(
            kubelet=kubeconfigs["kubelet"],
            kube_proxy=kubeconfigs["kube-proxy"],
            scheduler=kubeconfigs["scheduler"],
            controller_manager=kubeconfigs["controller-manager"],
            kubelet_serving=ca.issue_serving(
                "kubelet-serving", (NODE_NAME, "localhost"), ("127.0.0.1", NODE_IP), NODE_NAME
            ),
            # The API server's client identity towards the kubelet (logs, exec, port-forward).
            apiserver_kubelet_client=ca.issue_client(
                "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"]
            ),
        )
        (self.workdir / "audit-policy.yaml").write_text(AUDIT_POLICY)
        return pki

    def _command(self, argv: list[str]) -> list[str]:
        return self.sandbox.command(argv)

    def _process_env(self) -> dict[str, str] | None:
        return self.sandbox.env()

    def _etcd_ports(self) -> tuple[int, int]:
        return ETCD_PORTS

    def _apiserver_port(self) -> int:
        return APISERVER_PORT

    def _apiserver_network_flags(self) -> list[str]:
        # The default lease endpoint reconciler: `kubernetes` → NODE_IP:6443, reached by pods
        # through the Service IP.
        return ["--bind-address=0.0.0.0", f"--advertise-address={NODE_IP}"]

    def _apiserver_policy_flags(self) -> list[str]:
        assert self.pki is not None
        assert self.credentials is not None
        client = self.credentials.apiserver_kubelet_client
        return [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={client.cert}",
            f"--kubelet-client-key={client.key}",
            f"--kubelet-certificate-authority={self.pki.ca.cert}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
        ]

    def _service_account_flags(self) -> list[str]:
        return [
            f"--service-account-issuer={self.issuer}",
            f"--service-account-jwks-uri={self.issuer}/openid/v1/jwks",
        ]

    def _controller_manager_args(self) -> list[str]:
        assert self.pki is not None
        assert self.credentials is not None
        return [
            f"--kubeconfig={self.credentials.controller_manager}",
            "--controllers=*",
            "--use-service-account-credentials=true",
            # root-ca-certificate-publisher writes kube-root-ca.crt, which every pod's
            # kube-api-access volume needs.
            f"--root-ca-file={self.pki.ca.cert}",
            f"--service-account-private-key-file={self.pki.sa_private_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--leader-elect=false",
            "--secure-port=0",
            "--v=0",
        ]

    def _start_controllers(self) -> None:
        assert self.credentials is not None
        kubeconfig = self.credentials.scheduler
        self._spawn(
            "kube-scheduler",
            [
                str(self.scheduler),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=10259",
                "--v=0",
            ],
        )
        super()._start_controllers()
