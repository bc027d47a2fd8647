"""One helm release of charts/kubemint on the node, shared by the tests of this directory.

The image is built from the repository's Dockerfile (kubemint.devcluster.image) and imported
into the node under the name the chart's defaults reference, so the release runs with the
chart's own values; only `operator.replicas: 2` (a standby for the leader test), the operator's
PodDisruptionBudget and a longer start budget (for a loaded test machine) are set. Sharing one
release is honest here: every test makes its own namespace and objects, and the tests that
disturb the release (an upgrade, a deleted operator pod) require that it serves without a
failure while they do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubemint.devcluster.helm import resolve_helm
from kubemint.devcluster.image import build_image
from kubemint.devcluster.node import NodeCluster
from kubemint.devcluster.release import ChartRelease, wait_ready_signing_key
from tests.node.chart import pods

TIMINGS: dict[str, float] = {}
VALUES: dict[str, Any] = {
    "operator": {"replicas": 2, "podDisruptionBudget": {"enabled": True}},
    # The shared test machine can be far more loaded than a node should ever be (load 30 on
    # 2 cores seen: Python took over 3 minutes to start): a longer start budget, nothing else.
    "tokenServer": {"startupProbe": {"failureThreshold": 200}},
}
TOOLBOX = "toolbox"


@dataclass
class Installed:
    node: NodeCluster
    release: ChartRelease

    @property
    def plane(self) -> Any:
        return self.node.plane

    def toolbox(self, *argv: str) -> str:
        """Run a command in the long-running toolbox pod (kubemint image, no credentials)."""
        return pods.exec_in(self.plane, TOOLBOX, TOOLBOX, *argv)

    def token_status(self, token_url: str, client_id: str, secret: str) -> tuple[int, str]:
        """A client_credentials request from inside the cluster: (HTTP status, body)."""
        out = self.toolbox("python", "-c", _REQUEST, token_url, client_id, secret)
        status, _, body = out.partition("\n")
        return int(status), body


_REQUEST = """\
import sys, httpx
r = httpx.post(sys.argv[1], data={"grant_type": "client_credentials"},
               auth=(sys.argv[2], sys.argv[3]), timeout=5)
print(r.status_code); print(r.text)
"""


@pytest.fixture(scope="session")
def installed(node_cluster: NodeCluster) -> Iterator[Installed]:
    started = time.monotonic()
    image = build_image()
    TIMINGS["image build (or cache hit)"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    node_cluster.import_image(image.archive)
    TIMINGS["image import"] = round(time.monotonic() - started, 1)
    plane = node_cluster.plane
    plane.kubectl("create", "namespace", TOOLBOX)
    node_cluster.wait_for_service_account(TOOLBOX, "default")
    sleeper = pods.container(TOOLBOX, ["python", "-c", "import time; time.sleep(10**8)"])
    pods.apply(plane, pods.pod(TOOLBOX, TOOLBOX, [sleeper], []))
    pods.wait_ready(plane, TOOLBOX, TOOLBOX)

    release = ChartRelease(resolve_helm(), node_cluster.kubeconfig, plane)
    started = time.monotonic()
    release.install(VALUES, timeout=480)
    TIMINGS["helm install --wait"] = round(time.monotonic() - started, 1)
    wait_ready_signing_key(plane)
    installed = Installed(node_cluster, release)
    _first_token(installed)
    TIMINGS["helm install to first token"] = round(time.monotonic() - started, 1)
    try:
        yield installed
    finally:
        release.uninstall()


def _first_token(installed: Installed) -> None:
    """A token issued to a new client, asked for from a pod through the Service by DNS name."""
    plane = installed.plane
    pods.apply(
        plane,
        {
            "apiVersion": "kubemint.io/v1alpha1",
            "kind": "OAuth2Client",
            "metadata": {"name": "first", "namespace": TOOLBOX},
            "spec": {"audiences": ["https://first.example"], "scopes": ["read"]},
        },
        {
            "apiVersion": "kubemint.io/v1alpha1",
            "kind": "AccessRule",
            "metadata": {"name": "first", "namespace": TOOLBOX},
            "spec": {
                "audience": "https://first.example",
                "scopes": ["read"],
                "subjects": [{"kind": "OAuth2Client", "name": "first"}],
            },
        },
    )
    plane.kubectl(
        "wait", "--for=condition=Ready", "-n", TOOLBOX, "oauth2client/first", "--timeout=120s"
    )
    data = secret_data(plane, TOOLBOX, "first-credentials")
    deadline = time.monotonic() + 60
    while True:
        status, body = installed.token_status(
            data["token-url"], data["client-id"], data["client-secret"]
        )
        if status == 200:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no first token: {status} {body}")
        time.sleep(0.5)


def secret_data(plane: Any, namespace: str, name: str) -> dict[str, str]:
    import base64

    out = plane.kubectl("get", "secret", "-n", namespace, name, "-o", "json").stdout
    data = json.loads(out).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The audit-log check of the chart's RBAC runs after every other test of the release; the
    first test's budget includes building the image and installing the release."""
    here = Path(__file__).parent
    mine = [i for i in items if here in Path(str(i.fspath)).parents]
    for item in mine:
        item.add_marker(pytest.mark.timeout(900))
    order = ["test_chart.py", "test_workloads.py", "test_rollout.py", "test_calendar.py"]

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = Path(str(item.fspath)).name
        audit = "allowed_by_the_chart_s_rbac" in item.name
        return (1 if audit else 0, order.index(name) if name in order else len(order))

    others = [i for i in items if i not in mine]
    items[:] = others + sorted(mine, key=rank)  # sorted() is stable: file order within


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "node tier: chart release timings (seconds)")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what}: {seconds}")
