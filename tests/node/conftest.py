"""The node tier: tests that need real pods, on a real single-node cluster.

`node_cluster` (session) is a `kubemint.devcluster.node.NodeCluster`: control plane, containerd,
kubelet, kube-proxy, kube-scheduler, CNI and CoreDNS inside namespaces of their own, with the
kubemint CRDs installed. Attributes tests rely on (keep them stable): `kubeconfig` (works from
the host), `kubectl`, `plane` (`plane.kubectl(...)`), `state_dir`, `audit_log`,
`import_image(archive)`, `run_in_sandbox(argv)`, `node_name`, `node_ip`, `service_cidr`,
`cluster_domain`, `dns_ip`, `issuer`, `images` (pause, coredns, busybox).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubemint.devcluster import layout
from kubemint.devcluster.node import NodeCluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.node)


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[NodeCluster]:
    """One node for the whole session, with the kubemint CRDs installed."""
    with NodeCluster(crd_paths=[layout.crds_dir()]) as node:
        yield node


@pytest.fixture
def node_namespace(node_cluster: NodeCluster) -> Iterator[str]:
    """A fresh namespace per test on the node (its `default` ServiceAccount exists on return);
    deleted afterwards without waiting."""
    name = f"n-{uuid.uuid4().hex[:10]}"
    node_cluster.plane.kubectl("create", "namespace", name)
    node_cluster.wait_for_service_account(name, "default")
    yield name
    node_cluster.plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
