"""The kubemint image, built from the repository's own Dockerfile without Docker or a registry.

`buildah bud --isolation chroot` builds the unchanged Dockerfile with the local base image as
PYTHON_IMAGE (the Dockerfile's published default stays for everyone else) into the private
storage, and `buildah push` writes it as an OCI archive named like the chart's default image
(`image.repository`:`appVersion`, i.e. docker.io/kubemint/kubemint:0.1.0), so a node that
imports the archive runs the chart and the examples unchanged. The archive is cached by the
content key (key.py): rebuilt only when the Dockerfile, the lock, the source or the base change.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from kubemint.devcluster import layout
from kubemint.devcluster.binaries import _lock
from kubemint.devcluster.image import archive, key
from kubemint.devcluster.image.base import base_reference, ensure_base
from kubemint.devcluster.image.storage import Storage
from kubemint.devcluster.image.tools import ImageError, ensure_packages

ARCHIVE = "kubemint.oci.tar"
METADATA = "image.json"
# pip in the builder reaches PyPI; a TLS-intercepting proxy's CA is only in the host's bundle.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
KEEP = 4  # cached archives kept (other checkouts on the machine may build other sources)


@dataclass(frozen=True)
class KubemintImage:
    archive: Path
    """An OCI archive for `ctr -n k8s.io images import` (or `oci-archive:` in containers/image)."""
    reference: str
    """The name the archive carries, e.g. docker.io/kubemint/kubemint:0.1.0."""
    digest: str
    """The manifest's digest (sha256:…)."""


def images_dir() -> Path:
    return layout.cache_dir() / "images"


def storage() -> Storage:
    """The private containers-storage every image build uses."""
    return Storage(images_dir() / "containers")


def chart_reference(repo: Path | None = None) -> str:
    """The image the chart runs by default: image.repository, image.tag or appVersion."""
    chart = (repo or layout.repo_root()) / "charts" / "kubemint"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    app_version = yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]
    image = values["image"]
    return archive.normalize(f"{image['repository']}:{image.get('tag') or app_version}")


def build_image(*, repo: Path | None = None, log: bool = True) -> KubemintImage:
    """The kubemint image as an OCI archive in the cache, built (once per content) if needed."""
    repo = repo or layout.repo_root()
    if not (repo / "Dockerfile").is_file():
        raise ImageError(f"no Dockerfile in {repo}")
    reference = chart_reference(repo)
    base = base_reference()
    build_args = {"PYTHON_IMAGE": base}
    content = key.kubemint_key(repo, base=base, build_args=build_args, reference=reference)
    cached = _complete(images_dir() / "kubemint" / content[:24])
    if cached:
        os.utime(cached.archive.parent)  # recently used: the last to be pruned
        return cached
    if os.geteuid() != 0:
        raise ImageError(
            "building the image needs root (buildah on a private storage in a mount namespace):"
            " run `make image` as root (or point KUBEMINT_CACHE_DIR at a cache root built)"
        )
    ensure_packages()
    with _lock(images_dir() / "build.lock"):
        images_dir().mkdir(parents=True, exist_ok=True)
        _clean_leftovers()
        context = Path(tempfile.mkdtemp(prefix="context.", dir=images_dir()))
        try:
            # Build from a snapshot of the context, keyed by the snapshot: an edit during the
            # build cannot make an entry whose content and key disagree.
            _snapshot(repo, context)
            content = key.kubemint_key(
                context, base=base, build_args=build_args, reference=reference
            )
            target = images_dir() / "kubemint" / content[:24]
            return _complete(target) or _build(context, target, reference, build_args, log=log)
        finally:
            shutil.rmtree(context, ignore_errors=True)


def _clean_leftovers() -> None:
    """Staging directories and storage state of builds that were killed (under the lock)."""
    leftovers = [
        *images_dir().glob("context.*"),
        *(images_dir() / "kubemint").glob("*.*"),
        *storage().root.glob("base.*"),
    ]
    for leftover in leftovers:
        shutil.rmtree(leftover, ignore_errors=True)
    storage().clean()


def _snapshot(repo: Path, context: Path) -> None:
    """Copy the files that reach the image (key.context_files) into `context`."""
    for path in key.context_files(repo):
        copy = context / path.relative_to(repo)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)


def _build(
    repo: Path, target: Path, reference: str, build_args: dict[str, str], *, log: bool
) -> KubemintImage:
    started = time.monotonic()
    store = storage()
    base = ensure_base(store, log=log)
    assert base == build_args["PYTHON_IMAGE"], (base, build_args)
    based = time.monotonic()
    local = f"localhost/kubemint/kubemint-build:{target.name}"
    command = ["bud", "--quiet", "--pull=never", "--isolation", "chroot", "--layers"]
    for name, value in build_args.items():
        command += ["--build-arg", f"{name}={value}"]
    if HOST_CA_BUNDLE.is_file():
        command += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    if log:
        print(f"kubemint: buildah bud the Dockerfile on {base}…", file=sys.stderr)
    store.buildah(*command, "-f", str(repo / "Dockerfile"), "-t", local, str(repo))
    built = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        oci = staging / "layout"
        tag = reference.rsplit(":", 1)[1]
        # gzip level 1: 29 s instead of 45 s here for 150 MB instead of 131 MB (measured).
        store.buildah("push", "--quiet", "--compression-format", "gzip",
                      "--compression-level", "1", local, f"oci:{oci}:{tag}")  # fmt: skip
        digest = archive.name_layout(oci, reference)
        archive.write_archive(oci, staging / ARCHIVE)
        shutil.rmtree(oci)
        image = {"reference": reference, "digest": digest, "base": base, "local": local}
        (staging / METADATA).write_text(json.dumps(image, indent=2) + "\n")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in _prune(target.parent, keep=KEEP):
        store.buildah("rmi", f"localhost/kubemint/kubemint-build:{old}", check=False)
    result = _complete(target)
    assert result is not None, target
    if log:
        done = time.monotonic()
        size = result.archive.stat().st_size / 1e6
        print(
            f"kubemint: image {reference} ({digest[:19]}, {size:.0f} MB) in {done - started:.0f}s"
            f" (base {based - started:.0f}s, build {built - based:.0f}s, push {done - built:.0f}s)",
            file=sys.stderr,
        )
    return result


def _complete(target: Path) -> KubemintImage | None:
    """The cache entry at `target`, if it is there (it is written whole, then renamed)."""
    try:
        image = json.loads((target / METADATA).read_text())
    except (OSError, ValueError):
        return None
    path = target / ARCHIVE
    if not path.is_file():
        return None
    return KubemintImage(archive=path, reference=image["reference"], digest=image["digest"])


def _prune(directory: Path, *, keep: int) -> list[str]:
    """Remove all but the `keep` most recently used complete entries (never one being
    written: its staging name has a dot); return the names removed."""
    entries = sorted(
        (p for p in directory.iterdir() if p.is_dir() and "." not in p.name and _complete(p)),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return [old.name for old in entries[keep:]]
