"""The Debian tools the image builds need, installed with apt-get when missing.

The packages are Debian bookworm's own (mmdebstrap 1.3.5, buildah 1.28.2): no registry, no
Docker. Installing needs root; anyone else gets an error naming the command to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

# The command each package provides, by package: what `shutil.which` looks for.
PACKAGES: Mapping[str, str] = {
    "mmdebstrap": "mmdebstrap",
    "buildah": "buildah",
    "uidmap": "newuidmap",
}


class ImageError(RuntimeError):
    """An image could not be built; the message says why and what to do."""


def missing(packages: Mapping[str, str] = PACKAGES) -> list[str]:
    """The packages whose command is not on PATH (or in /usr/sbin, /usr/bin)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])
    return [name for name, command in packages.items() if shutil.which(command, path=path) is None]


def ensure_packages(packages: Mapping[str, str] = PACKAGES) -> None:
    """Install the missing packages (idempotent; `apt-get update` only if the first try fails)."""
    absent = missing(packages)
    if not absent:
        return
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *absent]
    if os.geteuid() != 0:
        raise ImageError(
            f"building images needs {', '.join(absent)}: run `sudo {' '.join(install)}` "
            "(Debian bookworm packages) and retry"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for attempt in ([install], [["apt-get", "update", "-q"], install]):
        failed = None
        for command in attempt:
            result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                failed = result
                break
        if failed is None:
            break
    if failed is not None or missing(packages):
        detail = (failed.stderr or failed.stdout)[-2000:] if failed else "commands still missing"
        raise ImageError(f"`{' '.join(install)}` failed:\n{detail}")
