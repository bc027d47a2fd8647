"""The Debian packages the node runs on, installed with apt-get when missing.

runc and the CNI plugins are Debian's (runc needs cgo and libseccomp to build; the bookworm
plugins are enough), nft is what kube-proxy's nftables mode drives, and the portmap plugin
calls iptables. The test image's busybox is only downloaded (`apt-get download`) into the
cache and unpacked there: nothing is installed for it.
"""

from __future__ import annotations

from pathlib import Path

from kubemint.devcluster import debian, layout

RUNC = Path("/usr/sbin/runc")
# package → a file it installs (present = installed).
PACKAGES: dict[str, Path | str] = {
    "runc": RUNC,
    "containernetworking-plugins": Path("/usr/lib/cni/bridge"),
    "nftables": Path("/usr/sbin/nft"),
    "iptables": Path("/usr/sbin/iptables"),
}
# Tools the sandbox itself needs; part of any Debian system (util-linux, iproute2, mount).
BASE_TOOLS = ("unshare", "nsenter", "ip", "mount", "sysctl", "gcc")
CNI_BIN_DIR = Path("/usr/lib/cni")


class PackagesError(RuntimeError):
    """A package the node needs is missing and could not be installed."""


def missing_packages() -> list[str]:
    return debian.missing(PACKAGES)


def ensure_packages() -> None:
    """Install the node's Debian packages that are missing (as root); clear error otherwise."""
    tools = [tool for tool in BASE_TOOLS if not debian.present(tool)]
    if tools:
        raise PackagesError(
            f"the node needs {', '.join(tools)} (util-linux, iproute2, mount, procps, gcc)"
        )
    debian.ensure(PACKAGES, needed_for="the node", error=PackagesError)


def busybox_static() -> Path:
    """A static busybox binary from Debian's busybox-static, unpacked into the cache."""
    target = layout.cache_dir() / "node" / "busybox-static"
    binary = target / "bin" / "busybox"
    if binary.is_file():
        return binary
    debian.unpack("busybox-static", target, error=PackagesError)
    binary.stat()  # the package's one file
    return binary
