"""Debian packages the local clusters and image builds need, installed with apt-get when missing.

One place owns how a package is judged present (a file it installs, or a command it puts on
PATH), how apt-get runs (non-interactive; `apt-get update` only when the first attempt fails,
as on a brand-new machine without package lists) and what someone without root is told to run.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

# Where Debian puts administrators' commands, which a non-login PATH may lack.
_SBIN = ("/usr/sbin", "/sbin", "/usr/bin")
# `make test` builds the node binaries and the image at once, and both may install packages:
# kubemint's apt-get runs one at a time (this lock), and wait for anyone else's dpkg lock.
_LOCK = Path("/run/lock/kubemint-apt.lock")
_APT = ("apt-get", "-o", "DPkg::Lock::Timeout=600")


class DebianError(RuntimeError):
    """A package is missing and could not be installed; the message says what to run."""


def present(marker: Path | str) -> bool:
    """A package is present when the file it installs exists (an absolute Path) or the
    command it provides is found on PATH or in the sbin directories."""
    if isinstance(marker, Path):
        return marker.exists()
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(marker, path=path) is not None


def missing(packages: Mapping[str, Path | str]) -> list[str]:
    """The packages (by name) whose marker is absent, in the mapping's order."""
    return [name for name, marker in packages.items() if not present(marker)]


def ensure(
    packages: Mapping[str, Path | str], *, needed_for: str, error: type[Exception] = DebianError
) -> None:
    """Install the missing packages as root (idempotent); otherwise raise `error` naming the
    command to run."""
    absent = missing(packages)
    if not absent:
        return
    install = ["install", "-y", "-q", "--no-install-recommends", *absent]
    if os.geteuid() != 0:
        raise error(
            f"{needed_for} needs the Debian packages {' '.join(absent)}: run "
            f"`sudo apt-get {' '.join(install)}` and retry"
        )
    apt(install, error=error)
    still = missing(packages)
    if still:
        raise error(f"apt-get installed no {' '.join(still)}")


def apt(args: list[str], *, cwd: Path | None = None, error: type[Exception] = DebianError) -> None:
    """`apt-get <args>`, retried once after `apt-get update` (a new machine may have no lists)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _LOCK.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _run([*_APT, *args], cwd=cwd, env=env) is None:
            return
        for argv in ([*_APT, "update", "-q"], [*_APT, *args]):
            failure = _run(argv, cwd=cwd, env=env)
            if failure is not None:
                raise error(f"`{' '.join(argv)}` failed:\n{failure[-2000:]}")


def _run(argv: list[str], *, cwd: Path | None, env: Mapping[str, str]) -> str | None:
    """None on success, else what the command said."""
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    return None if result.returncode == 0 else (result.stderr or result.stdout)


def unpack(package: str, target: Path, *, error: type[Exception] = DebianError) -> Path:
    """`apt-get download` `package` and extract its files into `target` (replaced whole, so a
    half-written one never counts): binaries for the cache, nothing installed, no service
    started. Returns `target`."""
    download = target.with_name(target.name + ".download")
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    try:
        apt(["download", package], cwd=download, error=error)
        debs = sorted(download.glob(f"{package}_*.deb"))
        if not debs:
            raise error(f"apt-get download {package} wrote no .deb")
        unpacked = download / "root"
        result = subprocess.run(
            ["dpkg-deb", "-x", str(debs[0]), str(unpacked)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise error(f"dpkg-deb -x {debs[0].name} failed:\n{result.stderr[-2000:]}")
        shutil.rmtree(target, ignore_errors=True)
        unpacked.rename(target)
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return target


def candidate_version(package: str) -> str | None:
    """The version apt would install (`apt-cache policy`), or None when it knows none."""
    result = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=False
    )
    for line in result.stdout.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate" and value.strip() not in ("", "(none)"):
            return value.strip()
    return None
