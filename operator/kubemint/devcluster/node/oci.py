"""Write single-layer OCI image archives (an oci-layout tar), with the standard library only.

No daemon and no registry: `ctr -n k8s.io images import` reads the result and names the image
after the `io.containerd.image.name` annotation. The output is reproducible (fixed mtimes and
creation date, sorted entries), so an archive's bytes depend only on its inputs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class File:
    path: str  # inside the image, e.g. "/pause"
    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class Symlink:
    path: str
    target: str


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Sequence[str] = ()
    user: str = ""
    workdir: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (
            ("Entrypoint", list(self.entrypoint)),
            ("Cmd", list(self.cmd)),
            ("Env", list(self.env)),
            ("User", self.user),
            ("WorkingDir", self.workdir),
            ("Labels", dict(self.labels)),
        ):
            if value:
                out[key] = value
        return out


def layer_tar(entries: Sequence[File | Symlink]) -> bytes:
    """An uncompressed layer: the entries plus their parent directories, sorted by path."""
    dirs: set[str] = set()
    for entry in entries:
        parts = entry.path.strip("/").split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for entry in sorted(entries, key=lambda e: e.path):
            info = tarfile.TarInfo(entry.path.strip("/"))
            if isinstance(entry, Symlink):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.target, 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = len(entry.data), entry.mode
                tar.addfile(info, io.BytesIO(entry.data))
    return buffer.getvalue()


def image_config(config: ImageConfig, diff_id: str) -> dict[str, Any]:
    return {
        "created": EPOCH,
        "architecture": "amd64",
        "os": "linux",
        "config": config.as_json(),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": "kubemint.devcluster.node.oci"}],
    }


def write_archive(
    output: Path, name: str, entries: Sequence[File | Symlink], config: ImageConfig
) -> str:
    """Write the image `name` (e.g. localhost/x/y:tag) to `output`; return its manifest digest.

    Written to a temporary file first and renamed, so a cached archive is complete or absent."""
    raw = layer_tar(entries)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    layer = gzip.compress(raw, compresslevel=6, mtime=0)
    blobs: list[bytes] = []

    def blob(data: bytes, media_type: str) -> dict[str, Any]:
        blobs.append(data)
        return {
            "mediaType": media_type,
            "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }

    config_desc = blob(json.dumps(image_config(config, diff_id), sort_keys=True).encode(), CONFIG)
    layer_desc = blob(layer, LAYER)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
    }
    manifest_desc = blob(json.dumps(manifest, sort_keys=True).encode(), MANIFEST)
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    manifest_desc["annotations"] = {
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": tag,
    }
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [manifest_desc]}
    members = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())]
    members += [(f"blobs/sha256/{hashlib.sha256(b).hexdigest()}", b) for b in blobs]
    members.append(("index.json", json.dumps(index, sort_keys=True).encode()))
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=output.name + ".", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as tar:
            for member, data in members:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(manifest_desc["digest"])


def read_index(archive: Path) -> dict[str, Any]:
    """The archive's index.json (tests and callers read the image name from it)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index: dict[str, Any] = json.load(member)
        return index
