"""Finding helm: the HELM variable, the pinned version, the cache key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubemint.devcluster import helm
from kubemint.devcluster.helm import HelmError

MODULE = Path(__file__).resolve().parents[3] / "tests" / "envtest" / "helm"


def test_helm_set_in_the_environment_wins(tmp_path: Path) -> None:
    binary = tmp_path / "helm"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert helm.from_environment({"HELM": str(binary)}) == binary
    assert helm.from_environment({}) is None


def test_a_helm_variable_naming_nothing_runnable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HelmError, match="not an executable"):
        helm.from_environment({"HELM": str(tmp_path / "missing-helm")})


def test_the_version_comes_from_the_wrapper_module_and_keys_the_cache() -> None:
    version = helm.read_version(MODULE / "go.mod")
    assert version.startswith("v3.")
    assert helm.cache_key(MODULE).startswith(f"helm-{version}_")
