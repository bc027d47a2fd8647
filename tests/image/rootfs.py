"""An image's root filesystem from its OCI archive, and commands run in it as the image says.

What a container runtime does, reduced to what the image tests need: the layers unpacked in
order (with their whiteouts) into a directory cached by the manifest digest, then the image's
Env, User and Entrypoint applied with chroot in private mount and PID namespaces, the root
bind-mounted read-only (as the chart's readOnlyRootFilesystem), /tmp a tmpfs (the chart's
emptyDir), /proc and /dev provided. Nothing is mounted outside those namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubemint.devcluster import layout

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
KEEP = 2  # unpacked images kept in the cache


@dataclass(frozen=True)
class Rootfs:
    path: Path
    config: dict[str, Any]
    """The image config's `config` object: Env, User, Entrypoint, Cmd, WorkingDir, Labels."""

    @property
    def env(self) -> dict[str, str]:
        return dict(entry.split("=", 1) for entry in self.config.get("Env", []))


def _blob(tar: tarfile.TarFile, digest: str) -> Any:
    member = tar.extractfile("blobs/sha256/" + digest.removeprefix("sha256:"))
    assert member is not None, digest
    return member


def read_image(archive: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (single) manifest and the image config of an OCI archive."""
    with tarfile.open(archive) as tar:
        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.load(index_file)
        (descriptor,) = index["manifests"]
        manifest = json.load(_blob(tar, descriptor["digest"]))
        config = json.load(_blob(tar, manifest["config"]["digest"]))
    return manifest, config


def unpack(archive: Path, digest: str) -> Rootfs:
    """The image's root filesystem, unpacked once per manifest digest into the cache."""
    manifest, config = read_image(archive)
    cache = layout.cache_dir() / "images" / "rootfs"
    target = cache / digest.removeprefix("sha256:")[:24]
    if not (target / "rootfs").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=cache))
        try:
            root = staging / "rootfs"
            root.mkdir()
            with tarfile.open(archive) as outer:
                for layer in manifest["layers"]:
                    with tarfile.open(fileobj=_blob(outer, layer["digest"]), mode="r|*") as tar:
                        _apply(tar, root)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _prune(cache, keep=KEEP)
    return Rootfs(target / "rootfs", config.get("config", {}))


def _apply(layer: tarfile.TarFile, root: Path) -> None:
    """One layer onto `root`: whiteouts delete, everything else is extracted. The `tar` filter
    refuses members that would land outside `root` (e.g. through an absolute symlink)."""
    for member in layer:
        parent, _, name = member.name.rstrip("/").rpartition("/")
        if name == OPAQUE:
            directory = root / parent
            for child in directory.iterdir() if directory.is_dir() else ():
                _remove(child)
            continue
        if name.startswith(WHITEOUT):
            _remove(root / parent / name.removeprefix(WHITEOUT))
            continue
        existing = root / member.name
        if existing.is_symlink() or (existing.exists() and not existing.is_dir()):
            existing.unlink()
        layer.extract(member, root, set_attrs=True, numeric_owner=True, filter="tar")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _prune(cache: Path, *, keep: int) -> None:
    entries = sorted(
        (p for p in cache.iterdir() if "." not in p.name and (p / "rootfs").is_dir()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)


# PID 1 in the private namespaces: $1 is the root; then the uid:gid, the workdir and the argv.
_RUN = """
set -e
root=$1 user=$2 workdir=$3; shift 3
mount -n --bind "$root" "$root"
mount -n -t tmpfs -o mode=1777,size=64m tmpfs "$root/tmp"
mount -n -t proc proc "$root/proc"
mount -n --rbind /dev "$root/dev"
mount -n -o remount,bind,ro "$root"
exec chroot --userspec="$user" --groups="${user#*:}" "$root" sh -c 'cd "$0" && exec "$@"' \
    "$workdir" "$@"
"""


def run(
    rootfs: Rootfs,
    args: list[str],
    *,
    entrypoint: list[str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`args` after the image's entrypoint (or `entrypoint`), as the image's user and with its
    environment only, on the read-only root."""
    command = (rootfs.config.get("Entrypoint") if entrypoint is None else entrypoint) or []
    user = rootfs.config.get("User") or "0:0"
    workdir = rootfs.config.get("WorkingDir") or "/"
    env = ["env", "-i", *(f"{k}={v}" for k, v in rootfs.env.items())]
    argv = [
        "unshare", "--mount", "--pid", "--fork", "--propagation", "private", "--",
        "sh", "-c", _RUN, "sh", str(rootfs.path), user, workdir, *env, *command, *args,
    ]  # fmt: skip
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
