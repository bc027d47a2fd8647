"""Where the development assets live: the repository checkout and the build cache.

`kubemint dev up` and the tests run from a checkout; the paths can be overridden with
environment variables for other layouts.
"""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout this package was imported from (operator/kubemint/devcluster/ → root)."""
    return Path(__file__).resolve().parents[3]


def envtest_module_dir() -> Path:
    """The Go wrapper module that pins and builds the control-plane binaries."""
    override = os.environ.get("KUBEMINT_ENVTEST_MODULE")
    return Path(override) if override else repo_root() / "tests" / "envtest"


def crds_dir() -> Path:
    """The single source of the CustomResourceDefinitions."""
    override = os.environ.get("KUBEMINT_CRDS_DIR")
    return Path(override) if override else repo_root() / "crds"


def cache_dir() -> Path:
    """Per-user cache outside the repository, shared by every checkout on the machine."""
    override = os.environ.get("KUBEMINT_CACHE_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kubemint"


def node_module_dir(name: str) -> Path:
    """One of the Go wrapper modules of the node tier (`kube`, `containerd`, `coredns`)."""
    override = os.environ.get("KUBEMINT_NODE_MODULES")
    return (Path(override) if override else repo_root() / "tests" / "node") / name
