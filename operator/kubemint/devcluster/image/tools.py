"""The Debian tools the image builds need, installed with apt-get when missing.

The packages are Debian bookworm's own (mmdebstrap 1.3.5, buildah 1.28.2): no registry, no
Docker. Installing needs root; anyone else gets an error naming the command to run.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubemint.devcluster import debian

# The command each package provides, by package: what `shutil.which` looks for.
PACKAGES: Mapping[str, str] = {
    "mmdebstrap": "mmdebstrap",
    "buildah": "buildah",
    "uidmap": "newuidmap",
}


class ImageError(RuntimeError):
    """An image could not be built; the message says why and what to do."""


def missing(packages: Mapping[str, str] = PACKAGES) -> list[str]:
    """The packages whose command is not on PATH (or in the sbin directories)."""
    return debian.missing(packages)


def ensure_packages(packages: Mapping[str, str] = PACKAGES) -> None:
    """Install the missing packages (idempotent; `apt-get update` only if the first try fails)."""
    debian.ensure(packages, needed_for="building images", error=ImageError)
