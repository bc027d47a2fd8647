"""Finding the control-plane binaries: envtest conventions, versions, cache keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubemint.devcluster import binaries
from kubemint.devcluster.binaries import BinariesError, Versions

REPO = Path(__file__).resolve().parents[3]


def _fake_assets(directory: Path, names: tuple[str, ...] = binaries.NAMES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return directory


def test_nothing_in_the_environment_means_build_or_cache() -> None:
    assert binaries.from_environment({}) is None


def test_kubebuilder_assets_names_a_directory_of_all_four(tmp_path: Path) -> None:
    assets = _fake_assets(tmp_path / "bin")
    found = binaries.from_environment({"KUBEBUILDER_ASSETS": str(assets)})
    assert found is not None
    assert found.kube_apiserver == assets / "kube-apiserver"
    assert found.directory == assets


def test_a_test_asset_variable_overrides_one_binary(tmp_path: Path) -> None:
    assets = _fake_assets(tmp_path / "bin")
    other = _fake_assets(tmp_path / "other", ("etcd",))
    found = binaries.from_environment(
        {"KUBEBUILDER_ASSETS": str(assets), "TEST_ASSET_ETCD": str(other / "etcd")}
    )
    assert found is not None
    assert found.etcd == other / "etcd"
    assert found.kubectl == assets / "kubectl"


def test_an_incomplete_assets_directory_names_what_is_missing(tmp_path: Path) -> None:
    assets = _fake_assets(tmp_path / "bin", ("etcd", "kube-apiserver"))
    with pytest.raises(BinariesError, match="kube-controller-manager, kubectl"):
        binaries.from_environment({"KUBEBUILDER_ASSETS": str(assets)})


def test_a_non_executable_file_does_not_count(tmp_path: Path) -> None:
    assets = _fake_assets(tmp_path / "bin")
    (assets / "kubectl").chmod(0o644)
    with pytest.raises(BinariesError, match="kubectl"):
        binaries.from_environment({"KUBEBUILDER_ASSETS": str(assets)})


def test_versions_come_from_the_wrapper_modules_go_mod() -> None:
    versions = binaries.read_versions(REPO / "tests" / "envtest" / "go.mod")
    assert versions.kubernetes.startswith("v1.")
    assert versions.etcd.startswith("v3.")


def test_every_staging_module_is_replaced_by_the_matching_published_tag() -> None:
    text = (REPO / "tests" / "envtest" / "go.mod").read_text()
    versions = binaries.read_versions(REPO / "tests" / "envtest" / "go.mod")
    staging = "v0." + versions.kubernetes.removeprefix("v1.")
    replaced = [line.split() for line in text.splitlines() if "=>" in line]
    assert len(replaced) >= 33
    for old, _, new, tag in replaced:
        assert old == new
        assert tag == staging, f"{old} is replaced with {tag}, expected {staging}"


def test_a_go_mod_without_kubernetes_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module x\n\nrequire go.etcd.io/etcd/server/v3 v3.7.3\n")
    with pytest.raises(BinariesError, match=r"k8s\.io/kubernetes"):
        binaries.read_versions(tmp_path / "go.mod")


def test_the_cache_key_changes_when_go_sum_changes(tmp_path: Path) -> None:
    module = REPO / "tests" / "envtest"
    copy = tmp_path / "envtest"
    copy.mkdir()
    for name in ("go.mod", "go.sum"):
        (copy / name).write_bytes((module / name).read_bytes())
    key = binaries.cache_key(copy)
    assert key.startswith("k8s-v1.")
    assert "_etcd-v3." in key
    (copy / "go.sum").write_text((copy / "go.sum").read_text() + "\n")
    assert binaries.cache_key(copy) != key


def test_kubernetes_binaries_are_stamped_with_their_version() -> None:
    flags = binaries._ldflags("kube-apiserver", Versions("v1.37.2", "v3.7.3"))
    assert "k8s.io/component-base/version.gitVersion=v1.37.2" in flags
    assert "gitMinor=37" in flags
    assert "gitVersion" not in binaries._ldflags("etcd", Versions("v1.37.2", "v3.7.3"))


def test_resolution_without_a_module_or_assets_explains_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name == "KUBEBUILDER_ASSETS" or name.startswith("TEST_ASSET_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KUBEMINT_ENVTEST_MODULE", str(tmp_path / "nowhere"))
    with pytest.raises(BinariesError, match="KUBEBUILDER_ASSETS"):
        binaries.resolve_binaries()
