"""Fixtures for tests against a real control plane (etcd + kube-apiserver + controller-manager)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubemint.devcluster import ControlPlane, layout, resolve_binaries
from kubemint.devcluster.components import (
    metrics_url,
    operator_process,
    token_server_process,
    wait_for_http,
    wait_for_leader,
)
from kubemint.devcluster.controlplane import free_port
from kubemint.devcluster.processes import ManagedProcess
from tests.integration.tenants import tenants  # noqa: F401 — the fixture, for every test here


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def cluster() -> Iterator[ControlPlane]:
    """One control plane for the whole session, with the kubemint CRDs installed."""
    with ControlPlane(resolve_binaries(), crd_paths=[layout.crds_dir()]) as plane:
        yield plane


@pytest.fixture
def namespace(cluster: ControlPlane) -> Iterator[str]:
    """A fresh namespace per test; deleted afterwards without waiting."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@dataclass
class RunningOperator:
    """A `kubemint operator` subprocess acting for one server namespace."""

    cluster: ControlPlane
    namespace: str  # the token server's namespace (SigningKeys, verification records)
    process: ManagedProcess
    issuer: str

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    @property
    def metrics_url(self) -> str:
        return operator_url(self.process, "KUBEMINT_METRICS_PORT", "/metrics")

    @property
    def liveness_url(self) -> str:
        return operator_url(self.process, "KUBEMINT_LIVENESS_PORT", "/healthz")


def operator_url(process: ManagedProcess, port_variable: str, path: str) -> str:
    """Where an operator started by `start_operator` serves `path` (its metrics or liveness
    port, free ports picked at start)."""
    assert process.env is not None
    return f"http://127.0.0.1:{process.env[port_variable]}{path}"


def start_operator(
    cluster: ControlPlane,
    namespace: str,
    name: str,
    lease: str,
    log_dir: Path,
    issuer: str = "https://kubemint.test",
    extra_env: Mapping[str, str] | None = None,
    recheck_interval: float = 1,
) -> ManagedProcess:
    process = operator_process(
        cluster,
        namespace=namespace,
        issuer=issuer,
        name=name,
        recheck_interval=recheck_interval,
        lease_name=lease,
        log_dir=log_dir,
        extra_env={
            "KUBEMINT_PROBE_HOST": "127.0.0.1",
            "KUBEMINT_METRICS_PORT": str(free_port()),
            "KUBEMINT_LIVENESS_PORT": str(free_port()),
            **(extra_env or {}),
        },
    )
    process.start()
    return process


@contextmanager
def own_operator(
    cluster: ControlPlane,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    scheme: str = "http",
    extra_env: Mapping[str, str] | None = None,
    recheck_interval: float = 1,
) -> Iterator[RunningOperator]:
    """An operator (fast re-checks unless told otherwise) leading in a server namespace of its
    own with a `default` SigningKey; its issuer is a free loopback port where a token server
    may listen."""
    namespace = f"kms-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("apply", "-f", "-", stdin=SIGNING_KEY.format(namespace=namespace))
    logs = tmp_path_factory.mktemp("operator")
    issuer = f"{scheme}://127.0.0.1:{free_port()}"
    process = start_operator(
        cluster,
        namespace,
        "op",
        "kubemint-operator",
        logs,
        issuer,
        extra_env=extra_env,
        recheck_interval=recheck_interval,
    )
    try:
        wait_for_leader(cluster, namespace, "kubemint-operator", "op")
        yield RunningOperator(cluster, namespace, process, issuer)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def operator(
    cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    """An operator (fast re-checks) with its own server namespace and a `default` SigningKey."""
    with own_operator(cluster, tmp_path_factory) as running:
        yield running


@dataclass
class RunningServer:
    issuer: str
    process: ManagedProcess

    @property
    def token_url(self) -> str:
        return self.issuer + "/oauth2/token"

    @property
    def metrics_url(self) -> str:
        """/metrics has a port of its own (never the published one)."""
        return metrics_url(self.process)

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")


@contextmanager
def own_token_server(
    operator: RunningOperator,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    extra_env: Mapping[str, str] | None = None,
    ready_url: str | None = None,
) -> Iterator[RunningServer]:
    """`kubemint token-server` on the operator's issuer URL, reading the same namespace."""
    port = int(operator.issuer.rsplit(":", 1)[1])
    process = token_server_process(
        operator.cluster,
        namespace=operator.namespace,
        issuer=operator.issuer,
        port=port,
        log_dir=tmp_path_factory.mktemp("token-server"),
        # Every test calls from 127.0.0.1: the per-source limit would couple them.
        extra_env={"KUBEMINT_AUTH_FAILURES_PER_SOURCE": "100000", **(extra_env or {})},
    )
    process.start()
    try:
        wait_for_http(ready_url or operator.issuer + "/readyz", process)
        yield RunningServer(operator.issuer, process)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def token_server(
    operator: RunningOperator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """`kubemint token-server` on the operator's issuer URL, reading the same namespace."""
    with own_token_server(operator, tmp_path_factory) as running:
        yield running


SIGNING_KEY = """\
apiVersion: kubemint.io/v1alpha1
kind: SigningKey
metadata: {{name: default, namespace: {namespace}}}
spec: {{algorithm: ES256}}
"""
