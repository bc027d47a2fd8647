"""OCI image archives that `ctr images import` names without being told.

buildah writes an OCI layout directory; its index.json gains the annotation containerd reads
for the image name (`io.containerd.image.name`, the full reference), next to the OCI tag
(`org.opencontainers.image.ref.name`), and the directory becomes a plain tar: the layout that
`oci-archive:` and `ctr -n k8s.io images import` read. index.json is not content-addressed, so
the manifest's digest is unchanged.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"


def normalize(reference: str) -> str:
    """The fully qualified form containerd uses: `kubemint/kubemint:0.1.0` →
    `docker.io/kubemint/kubemint:0.1.0`, `busybox` → `docker.io/library/busybox:latest`."""
    name, _, digest = reference.partition("@")
    first, _, rest = name.partition("/")
    if not rest:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if not digest and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return f"{name}@{digest}" if digest else name


def name_layout(layout: Path, reference: str) -> str:
    """Annotate the single manifest of the layout with `reference`; return its digest."""
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    manifests = index.get("manifests", [])
    if len(manifests) != 1:
        raise ValueError(f"{index_path}: want one manifest, found {len(manifests)}")
    tag = reference.rsplit(":", 1)[1] if ":" in reference.rsplit("/", 1)[-1] else "latest"
    annotations = manifests[0].setdefault("annotations", {})
    annotations[CONTAINERD_NAME] = reference
    annotations[OCI_REF_NAME] = tag
    index_path.write_text(json.dumps(index))
    return str(manifests[0]["digest"])


def write_archive(layout: Path, archive: Path) -> None:
    """The layout directory as an uncompressed tar (the blobs are compressed already)."""
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(layout):
            dirs.sort()
            for name in sorted(files):
                path = Path(root) / name
                tar.add(
                    path,
                    arcname=path.relative_to(layout).as_posix(),
                    recursive=False,
                    filter=_plain,
                )


def read_index(archive: Path) -> dict[str, object]:
    """index.json of an OCI archive."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise ValueError(f"{archive} has no index.json")
        index: dict[str, object] = json.load(member)
        return index


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    info.mode = 0o644
    return info
