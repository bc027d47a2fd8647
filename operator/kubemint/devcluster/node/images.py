"""The images the node needs without a registry: pause, CoreDNS and a small test image.

Each is an OCI archive (oci.py) cached under `~/.cache/kubemint/node/images/` by a digest of
everything it is made from (source or binary, build flags, name, config): a new input gives a new
file name and an unchanged one is reused as it is.

- pause: `build/pause/linux/pause.c` of the pinned k8s.io/kubernetes module, built with gcc as its
  Makefile does (static, -Os); user 65535 as upstream's image.
- CoreDNS: the minimal build from `tests/node/coredns` (binaries.py); user 65532.
- busybox: Debian's busybox-static with a link per applet (sh, wget, httpd, nslookup, …), for
  tests that need a shell, an HTTP server and client, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubemint.devcluster import layout
from kubemint.devcluster.binaries import KUBERNETES_MODULE, BinariesError, required_version
from kubemint.devcluster.node import oci
from kubemint.devcluster.node.binaries import NodeBinaries
from kubemint.devcluster.node.packages import busybox_static

PAUSE_CFLAGS = ("-Os", "-Wall", "-Werror", "-static")


@dataclass(frozen=True)
class Image:
    name: str  # the reference pods use, e.g. localhost/kubemint/pause:3.10.2
    archive: Path


@dataclass(frozen=True)
class NodeImages:
    pause: Image
    coredns: Image
    busybox: Image


def node_images(binaries: NodeBinaries) -> NodeImages:
    return NodeImages(pause=pause_image(), coredns=coredns_image(binaries), busybox=busybox_image())


def content_key(name: str, config: oci.ImageConfig, parts: list[bytes]) -> str:
    """Digest of an image's inputs (its name, config and the bytes it is built from)."""
    digest = hashlib.sha256(name.encode() + b"\0")
    digest.update(json.dumps(config.as_json(), sort_keys=True).encode() + b"\0")
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def cached(
    name: str,
    config: oci.ImageConfig,
    key_parts: list[bytes],
    entries: Callable[[], list[oci.File | oci.Symlink]],
) -> Image:
    """The archive for these inputs, written (from `entries()`) only when not cached yet."""
    stem = name.rsplit("/", 1)[-1].replace(":", "-")
    archive = images_dir() / f"{stem}_{content_key(name, config, key_parts)}.oci.tar"
    if not archive.is_file():
        oci.write_archive(archive, name, entries(), config)
    return Image(name, archive)


def images_dir() -> Path:
    return layout.cache_dir() / "node" / "images"


def pause_image() -> Image:
    source_dir = _kubernetes_source() / "build" / "pause"
    source = (source_dir / "linux" / "pause.c").read_bytes()
    match = re.search(r"^TAG\s*\?=\s*(\S+)", (source_dir / "Makefile").read_text(), re.MULTILINE)
    tag = match.group(1) if match else "3.10"
    name = f"localhost/kubemint/pause:{tag}"
    config = oci.ImageConfig(entrypoint=["/pause"], user="65535:65535")
    flags = (*PAUSE_CFLAGS, f"-DVERSION=v{tag}-kubemint")

    def build() -> list[oci.File | oci.Symlink]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "pause"
            result = subprocess.run(
                ["gcc", *flags, "-o", str(out), str(source_dir / "linux" / "pause.c")],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise BinariesError(f"gcc pause.c failed (needs libc6-dev):\n{result.stderr}")
            subprocess.run(["strip", str(out)], check=True)
            return [oci.File("/pause", out.read_bytes(), 0o755)]

    return cached(name, config, [source, " ".join(flags).encode()], build)


def coredns_image(binaries: NodeBinaries) -> Image:
    name = f"localhost/kubemint/coredns:{binaries.coredns_version.lstrip('v')}-min"
    config = oci.ImageConfig(entrypoint=["/coredns"], user="65532:65532")
    binary = binaries.coredns.read_bytes()
    return cached(name, config, [binary], lambda: [oci.File("/coredns", binary, 0o755)])


def busybox_image() -> Image:
    busybox = busybox_static()
    binary = busybox.read_bytes()
    listing = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    applets = sorted({a for a in listing.stdout.split() if a and "/" not in a} - {"busybox"})
    entries: list[oci.File | oci.Symlink] = [oci.File("/bin/busybox", binary, 0o755)]
    entries += [oci.Symlink(f"/bin/{applet}", "busybox") for applet in applets]
    entries.append(oci.File("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"))
    entries.append(oci.File("/etc/group", b"root:x:0:\n"))
    name = "localhost/kubemint/busybox:static"
    config = oci.ImageConfig(cmd=["sh"], env=["PATH=/bin"])
    return cached(name, config, [binary, "\n".join(applets).encode()], lambda: entries)


def _kubernetes_source() -> Path:
    """The pinned k8s.io/kubernetes module's directory in the Go module cache."""
    module_dir = layout.node_module_dir("kube")
    version = required_version(module_dir / "go.mod", KUBERNETES_MODULE)
    go = shutil.which("go")
    if go is None:
        raise BinariesError("the pause image needs the Go toolchain (to find pause.c)")
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{KUBERNETES_MODULE}@{version}"],
        cwd=module_dir,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"},
    )
    if result.returncode != 0:
        raise BinariesError(f"go mod download {KUBERNETES_MODULE} failed:\n{result.stderr}")
    return Path(json.loads(result.stdout)["Dir"])
