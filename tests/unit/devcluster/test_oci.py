"""The stdlib OCI archive writer: a layout containerd can import, reproducible byte for byte."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from pathlib import Path

from kubemint.devcluster.node import images, oci

ENTRIES: list[oci.File | oci.Symlink] = [
    oci.File("/bin/tool", b"\x7fELF fake", 0o755),
    oci.Symlink("/bin/sh", "tool"),
    oci.File("/etc/app/config", b"x=1\n"),
]
CONFIG = oci.ImageConfig(entrypoint=["/bin/tool"], user="65532:65532", env=["PATH=/bin"])


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        out = {}
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            assert handle is not None
            out[member.name] = handle.read()
        return out


def test_archive_is_an_oci_layout_whose_digests_match_its_blobs(tmp_path: Path) -> None:
    archive = tmp_path / "tool.oci.tar"
    digest = oci.write_archive(archive, "localhost/kubemint/tool:1.0", ENTRIES, CONFIG)
    members = _members(archive)
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in members.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    (descriptor,) = json.loads(members["index.json"])["manifests"]
    assert descriptor["digest"] == digest
    assert descriptor["annotations"]["io.containerd.image.name"] == "localhost/kubemint/tool:1.0"
    assert descriptor["annotations"]["org.opencontainers.image.ref.name"] == "1.0"
    manifest = json.loads(members["blobs/sha256/" + digest.split(":")[1]])
    config = json.loads(members["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["config"] == {
        "Entrypoint": ["/bin/tool"],
        "Env": ["PATH=/bin"],
        "User": "65532:65532",
    }
    (layer,) = manifest["layers"]
    raw = gzip.decompress(members["blobs/sha256/" + layer["digest"].split(":")[1]])
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]


def test_layer_holds_the_files_their_parent_directories_and_symlinks(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    layer.write_bytes(oci.layer_tar(ENTRIES))
    with tarfile.open(layer) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin"].isdir()
    assert members["etc/app"].isdir()
    assert members["bin/tool"].mode == 0o755
    assert members["bin/sh"].issym()
    assert members["bin/sh"].linkname == "tool"
    assert all(m.mtime == 0 for m in members.values())


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    one, two = tmp_path / "one.tar", tmp_path / "two.tar"
    oci.write_archive(one, "localhost/x:1", ENTRIES, CONFIG)
    oci.write_archive(two, "localhost/x:1", ENTRIES, CONFIG)
    assert one.read_bytes() == two.read_bytes()


def test_image_cache_key_changes_with_any_input() -> None:
    key = images.content_key("localhost/x:1", CONFIG, [b"binary"])
    assert images.content_key("localhost/x:1", CONFIG, [b"binary"]) == key
    assert images.content_key("localhost/x:2", CONFIG, [b"binary"]) != key
    assert images.content_key("localhost/x:1", oci.ImageConfig(), [b"binary"]) != key
    assert images.content_key("localhost/x:1", CONFIG, [b"binary2"]) != key
