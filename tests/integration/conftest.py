"""Fixtures for tests against a real control plane (etcd + kube-apiserver + controller-manager)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubemint.devcluster import ControlPlane, layout, resolve_binaries


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
