"""The kubemint chart installed for real: `helm install charts/kubemint` on a node cluster.

The image is the one built locally from the repository's Dockerfile (kubemint.devcluster.image),
imported into the node's containerd under the name the chart's defaults reference
(docker.io/kubemint/kubemint:<appVersion>), so the release runs with the chart's own values:
its ServiceAccounts and RBAC, probes, security contexts, PodDisruptionBudget and Service.
`make run-cluster` (python -m kubemint.devcluster.release) brings it all up for a person to try.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kubemint.devcluster import layout

RELEASE = "kubemint"
NAMESPACE = "kubemint-system"


class ReleaseError(RuntimeError):
    """helm or the release's pods failed; the message carries helm's output or the pods' state."""


class Kubectl(Protocol):
    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]: ...


@dataclass
class ChartRelease:
    """One helm release of charts/kubemint on a cluster reachable with `kubeconfig`."""

    helm: Path
    kubeconfig: Path
    plane: Kubectl
    name: str = RELEASE
    namespace: str = NAMESPACE
    chart: Path = field(default_factory=lambda: layout.repo_root() / "charts" / "kubemint")
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def fullname(self) -> str:
        return self.name if "kubemint" in self.name else f"{self.name}-kubemint"

    @property
    def service(self) -> str:
        """The token server's Service by DNS name, as pods reach it."""
        return f"http://{self.fullname}-token-server.{self.namespace}.svc"

    @property
    def issuer(self) -> str:
        """The chart's default issuer (values.issuer empty): the in-cluster Service URL."""
        return self.service

    def run(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.helm), *args, "--kubeconfig", str(self.kubeconfig)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "HELM_CACHE_HOME": str(self._helm_home("cache"))}
            | {"HELM_CONFIG_HOME": str(self._helm_home("config"))}
            | {"HELM_DATA_HOME": str(self._helm_home("data"))},
        )
        if result.returncode != 0:
            raise ReleaseError(f"helm {' '.join(args)} failed:\n{result.stderr.strip()}")
        return result

    def install(self, values: Mapping[str, Any], *, timeout: float = 240.0) -> None:
        """`helm install --wait`: returns once every Deployment of the release is available.
        The CRDs are the cluster's already (the node installs crds/, the chart's copy is
        byte-identical), so the release does not own them (crds.enabled false)."""
        started = time.monotonic()
        values = {**values, "crds": {"enabled": False, **values.get("crds", {})}}
        self._helm_values("install", values, timeout, "--create-namespace")
        self.timings["helm install --wait"] = round(time.monotonic() - started, 2)

    def upgrade(self, values: Mapping[str, Any], *, timeout: float = 300.0) -> None:
        """`helm upgrade --reuse-values --wait` with `values` on top."""
        self._helm_values("upgrade", values, timeout, "--reuse-values")

    def uninstall(self) -> None:
        self.run("uninstall", self.name, "--namespace", self.namespace, "--wait")

    def _helm_values(
        self, verb: str, values: Mapping[str, Any], timeout: float, *extra: str
    ) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(values, handle)
        try:
            self.run(
                verb,
                self.name,
                str(self.chart),
                "--namespace",
                self.namespace,
                "--values",
                handle.name,
                "--wait",
                "--timeout",
                f"{int(timeout)}s",
                *extra,
                timeout=timeout + 30,
            )
        except ReleaseError as exc:
            raise ReleaseError(f"{exc}\n{self.describe()}") from None
        finally:
            os.unlink(handle.name)

    def pods(self, component: str) -> list[dict[str, Any]]:
        """The release's pods of one component ("operator" or "token-server")."""
        out = self.plane.kubectl(
            "get",
            "pods",
            "-n",
            self.namespace,
            "-l",
            f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component={component}",
            "-o",
            "json",
        ).stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def describe(self) -> str:
        """The release's pods and their recent events, for error messages."""
        pods = self.plane.kubectl("get", "pods", "-n", self.namespace, "-o", "wide", check=False)
        events = self.plane.kubectl(
            "get", "events", "-n", self.namespace, "--sort-by=.lastTimestamp", check=False
        )
        return f"{pods.stdout}{pods.stderr}\n{events.stdout[-4000:]}"

    def _helm_home(self, what: str) -> Path:
        path = self.kubeconfig.parent / "helm" / what
        path.mkdir(parents=True, exist_ok=True)
        return path


def wait_ready_signing_key(
    plane: Kubectl, namespace: str = NAMESPACE, timeout: float = 120
) -> None:
    """Until the chart's SigningKey is Ready. The operator's leader creates it (the chart
    hands it the values), so first wait for it to exist: `kubectl wait` fails at once on a
    missing object."""
    deadline = time.monotonic() + timeout
    while plane.kubectl(
        "get", "signingkey/default", "-n", namespace, check=False, timeout=30
    ).returncode:
        if time.monotonic() > deadline:
            raise ReleaseError(f"no SigningKey {namespace}/default after {timeout:.0f}s")
        time.sleep(1)
    timeout = max(1.0, deadline - time.monotonic())
    plane.kubectl(
        "wait",
        "--for=condition=Ready",
        "-n",
        namespace,
        "signingkey/default",
        f"--timeout={int(timeout)}s",
        timeout=timeout + 10,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`make run-cluster`: a node, the image, the chart; print how to reach it; run until
    Ctrl-C, then remove everything."""
    import signal

    from kubemint.devcluster.helm import resolve_helm
    from kubemint.devcluster.image import build_image
    from kubemint.devcluster.node import NodeCluster

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    started = time.monotonic()
    image = build_image()
    helm = resolve_helm()
    try:
        with NodeCluster(crd_paths=[layout.crds_dir()]) as node:
            node.import_image(image.archive)
            release = ChartRelease(helm, node.kubeconfig, node.plane)
            release.install({})
            wait_ready_signing_key(node.plane)
            took = time.monotonic() - started
            kubectl = f"{node.kubectl} --kubeconfig={node.kubeconfig}"
            print(
                f"kubemint {image.reference} is installed by helm (release {RELEASE} in "
                f"{NAMESPACE}) on a one-node cluster, in {took:.0f} s.\n"
                f"KUBECONFIG={node.kubeconfig}\n"
                f"KUBECTL={node.kubectl}\n"
                f"ISSUER={release.issuer}\n"
                f"TOKEN_URL={release.issuer}/oauth2/token\n"
                "Pods and Services are reachable from inside the cluster only; try:\n"
                f"  {kubectl} get pods -A\n"
                f"  {kubectl} apply -f examples/quickstart/\n"
                f"  {kubectl} -n {NAMESPACE} port-forward svc/{release.fullname}-token-server "
                "8080:80   # then curl http://127.0.0.1:8080/oauth2/jwks\n"
                "Ctrl-C stops and removes everything.",
                flush=True,
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
