"""The Debian packages the node runs on, installed with apt-get when missing.

runc and the CNI plugins are Debian's (runc needs cgo and libseccomp to build; the bookworm
plugins are enough), nft is what kube-proxy's nftables mode drives, and the portmap plugin
calls iptables. The test image's busybox is only downloaded (`apt-get download`) into the
cache and unpacked there: nothing is installed for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from kubemint.devcluster import layout

# package → a file it installs (present = installed).
PACKAGES = {
    "runc": Path("/usr/sbin/runc"),
    "containernetworking-plugins": Path("/usr/lib/cni/bridge"),
    "nftables": Path("/usr/sbin/nft"),
    "iptables": Path("/usr/sbin/iptables"),
}
# Tools the sandbox itself needs; part of any Debian system (util-linux, iproute2, mount).
BASE_TOOLS = ("unshare", "nsenter", "ip", "mount", "sysctl", "gcc")
CNI_BIN_DIR = Path("/usr/lib/cni")
RUNC = PACKAGES["runc"]


class PackagesError(RuntimeError):
    """A package the node needs is missing and could not be installed."""


def missing_packages() -> list[str]:
    return [name for name, marker in PACKAGES.items() if not marker.exists()]


def ensure_packages() -> None:
    """Install the node's Debian packages that are missing (as root); clear error otherwise."""
    tools = [tool for tool in BASE_TOOLS if not _which(tool)]
    if tools:
        raise PackagesError(
            f"the node needs {', '.join(tools)} (util-linux, iproute2, mount, procps, gcc)"
        )
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise PackagesError(
            f"the node needs the Debian packages {' '.join(missing)}: run as root, or install "
            "them with apt-get install --no-install-recommends"
        )
    _apt(["install", "-y", "-q", "--no-install-recommends", *missing])
    still = missing_packages()
    if still:
        raise PackagesError(f"apt-get did not install {' '.join(still)}")


def busybox_static() -> Path:
    """A static busybox binary from Debian's busybox-static, unpacked into the cache."""
    target = layout.cache_dir() / "node" / "busybox-static"
    binary = target / "bin" / "busybox"
    if binary.is_file():
        return binary
    download = target.with_name("busybox-static.download")
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    _apt(["download", "busybox-static"], cwd=download)
    debs = sorted(download.glob("busybox-static_*.deb"))
    if not debs:
        raise PackagesError("apt-get download busybox-static wrote no .deb")
    unpacked = download / "root"
    _run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)])
    (unpacked / "bin" / "busybox").stat()  # the package's one file
    shutil.rmtree(target, ignore_errors=True)
    (unpacked).rename(target)
    shutil.rmtree(download, ignore_errors=True)
    return binary


def _apt(args: list[str], cwd: Path | None = None) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    first = subprocess.run(
        ["apt-get", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if first.returncode == 0:
        return
    # A brand-new machine may have no package lists yet.
    _run(["apt-get", "update", "-q"], env=env)
    _run(["apt-get", *args], cwd=cwd, env=env)


def _run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackagesError(f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}")


def _which(tool: str) -> bool:
    return bool(shutil.which(tool) or any(Path(d, tool).exists() for d in ("/usr/sbin", "/sbin")))
