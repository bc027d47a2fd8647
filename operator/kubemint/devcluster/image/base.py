"""The local base image for Python apps: Debian bookworm packages only, no registry.

mmdebstrap (minbase) installs python3, python3-venv, python-is-python3 and ca-certificates from
the machine's Debian mirrors into a root filesystem tar; buildah turns it into a one-layer image
(FROM scratch, ADD the tar) in the private storage. Its tag carries the content key (suite,
packages, mirrors, this recipe), so a changed package list or mirror builds a new base and an
unchanged one is reused. It stands in for the Dockerfile's published `python:3.11-slim-bookworm`:
Debian's interpreter is /usr/bin/python3.11, which both stages of the Dockerfile share, so the
venv's bin/python symlink is valid in the final image too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubemint.devcluster.image import key, sources
from kubemint.devcluster.image.storage import Storage
from kubemint.devcluster.image.tools import ImageError

PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
REPOSITORY = "localhost/kubemint/python"
# apt's lists and caches are not part of the image (the image never runs apt).
CLEAN = 'chroot "$1" sh -c "apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin"'
CONTAINERFILE = """\
FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
CMD ["python3"]
"""
# Changing how the base is made (the hook, the Containerfile) must change the key.
RECIPE = f"minbase|{CLEAN}|{CONTAINERFILE}"


def base_reference() -> str:
    """The base image's tag in the private storage: suite plus its content key."""
    content = key.base_key(
        suite=sources.SUITE,
        packages=PACKAGES,
        sources=_sources(),
        recipe=RECIPE,
    )
    return f"{REPOSITORY}:3-{sources.SUITE}-{content[:16]}"


def ensure_base(storage: Storage, *, log: bool = True) -> str:
    """The base image's reference, built into `storage` unless already there."""
    reference = base_reference()
    if storage.has_image(reference):
        return reference
    started = time.monotonic()
    storage.root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="base.", dir=storage.root))
    try:
        rootfs = work / "rootfs.tar"
        if log:
            print(f"kubemint: mmdebstrap {sources.SUITE} ({', '.join(PACKAGES)})…", file=sys.stderr)
        _mmdebstrap(rootfs, _sources())
        bootstrapped = time.monotonic()
        (work / "Containerfile").write_text(CONTAINERFILE)
        storage.buildah(
            "bud", "--quiet", "--pull=never", "--isolation", "chroot", "--layers=false",
            "-f", str(work / "Containerfile"), "-t", reference, str(work),
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if log:
        done = time.monotonic()
        print(
            f"kubemint: base image {reference} in {done - started:.0f}s "
            f"(mmdebstrap {bootstrapped - started:.0f}s, import {done - bootstrapped:.0f}s)",
            file=sys.stderr,
        )
    return reference


def _sources() -> list[str]:
    try:
        return sources.machine_sources()
    except ValueError as exc:
        raise ImageError(str(exc)) from exc


def _mmdebstrap(target: Path, mirrors: list[str]) -> None:
    command = [
        "mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(PACKAGES)}",
        f"--customize-hook={CLEAN}", sources.SUITE, str(target), *mirrors,
    ]  # fmt: skip
    # Its scratch chroot goes next to the target, under the cache, not in /tmp.
    env = {**os.environ, "TMPDIR": str(target.parent)}
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-4000:]
        raise ImageError(f"mmdebstrap {sources.SUITE} failed ({result.returncode}):\n{output}")
