"""The image cache keys change exactly when what goes into an image does; the base's mirrors
come from the machine's apt sources; archives carry the name containerd imports them as."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from kubemint.devcluster.image import archive, key, sources
from kubemint.devcluster.image.build import chart_reference

ROOT = Path(__file__).resolve().parents[3]
BASE = "localhost/kubemint/python:3-bookworm-0123456789abcdef"
ARGS = {"PYTHON_IMAGE": BASE}
REFERENCE = "docker.io/kubemint/kubemint:0.1.0"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the key reads, plus things it must ignore."""
    tree = tmp_path / "repo"
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tree / name)
    (tree / "requirements").mkdir()
    shutil.copy(ROOT / "requirements" / "image.txt", tree / "requirements" / "image.txt")
    package = tree / "operator" / "kubemint"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "0.1.0"\n')
    (package / "cli.py").write_text("def main() -> None: ...\n")
    for other in ("tests/unit/test_x.py", "charts/kubemint/values.yaml", "docs/x.md"):
        (tree / other).parent.mkdir(parents=True, exist_ok=True)
        (tree / other).write_text("x\n")
    return tree


def _key(repo: Path, base: str = BASE, reference: str = REFERENCE) -> str:
    return key.kubemint_key(repo, base=base, build_args={"PYTHON_IMAGE": base}, reference=reference)


def _append(relative: str) -> Callable[[Path], None]:
    def change(repo: Path) -> None:
        path = repo / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write("\n# changed\n")

    return change


def _chmod_x(repo: Path) -> None:
    (repo / "operator" / "kubemint" / "cli.py").chmod(0o755)


def _rename(repo: Path) -> None:
    package = repo / "operator" / "kubemint"
    (package / "cli.py").rename(package / "command.py")


REBUILDS = {
    "Dockerfile": _append("Dockerfile"),
    "lock": _append("requirements/image.txt"),
    "source": _append("operator/kubemint/cli.py"),
    "new module": _append("operator/kubemint/client/__init__.py"),
    "renamed module": _rename,
    "executable bit": _chmod_x,
    "pyproject": _append("pyproject.toml"),
    "README": _append("README.md"),
    "dockerignore": _append(".dockerignore"),
}


@pytest.mark.parametrize("change", REBUILDS.values(), ids=REBUILDS)
def test_what_reaches_the_image_changes_the_key(repo: Path, change: Callable[[Path], None]) -> None:
    before = _key(repo)
    change(repo)
    assert _key(repo) != before


def _touch(repo: Path) -> None:
    path = repo / "operator" / "kubemint" / "cli.py"
    os.utime(path, (1, 1))


KEEPS = {
    "tests": _append("tests/unit/test_x.py"),
    "chart": _append("charts/kubemint/values.yaml"),
    "docs": _append("docs/x.md"),
    "bytecode": _append("operator/kubemint/__pycache__/cli.cpython-311.pyc"),
    "stray pyc": _append("operator/kubemint/cli.pyc"),
    "egg-info": _append("operator/kubemint.egg-info/PKG-INFO"),
    "file times": _touch,
    "an unrelated top-level file": _append("Makefile"),
}


@pytest.mark.parametrize("change", KEEPS.values(), ids=KEEPS)
def test_what_does_not_reach_the_image_keeps_the_key(
    repo: Path, change: Callable[[Path], None]
) -> None:
    before = _key(repo)
    change(repo)
    assert _key(repo) == before


def test_the_base_the_arguments_and_the_name_change_the_key(repo: Path) -> None:
    before = _key(repo)
    assert _key(repo, base=BASE.replace("0123", "4567")) != before
    assert _key(repo, reference="docker.io/kubemint/kubemint:0.2.0") != before
    assert _key(repo) == before  # ...and the same inputs give the same key


def test_the_real_checkout_keys_only_files_the_dockerfile_copies() -> None:
    files = [p.relative_to(ROOT).as_posix() for p in key.context_files(ROOT)]
    assert "requirements/image.txt" in files
    assert "operator/kubemint/cli.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert {f.split("/")[0] for f in files} <= {
        "Dockerfile",
        ".dockerignore",
        "pyproject.toml",
        "README.md",
        "requirements",
        "operator",
    }


def test_the_base_key_follows_packages_mirrors_and_recipe() -> None:
    mirrors = ["deb http://deb.debian.org/debian bookworm main"]
    one = key.base_key(suite="bookworm", packages=["python3"], sources=mirrors, recipe="r")
    assert one == key.base_key(suite="bookworm", packages=["python3"], sources=mirrors, recipe="r")
    assert one != key.base_key(
        suite="bookworm", packages=["python3", "curl"], sources=mirrors, recipe="r"
    )
    assert one != key.base_key(
        suite="bookworm", packages=["python3"], sources=["deb http://m/d bookworm main"], recipe="r"
    )
    assert one != key.base_key(suite="bookworm", packages=["python3"], sources=mirrors, recipe="s")


DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security/
Suites: bookworm-security
Components: main contrib

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
"""


def test_the_mirrors_are_the_machines_debian_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "google.list").write_text(
        "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
    )
    (tmp_path / "sources.list").write_text(
        "# local proxy\ndeb [arch=amd64 signed-by=/k.gpg] http://proxy:3142/debian bookworm main\n"
    )
    assert sources.machine_sources(tmp_path) == [
        "deb http://proxy:3142/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]


def test_no_bookworm_source_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(sources.OVERRIDE, raising=False)
    (tmp_path / "sources.list").write_text("deb http://deb.debian.org/debian trixie main\n")
    with pytest.raises(ValueError, match="KUBEMINT_DEBIAN_SOURCES"):
        sources.machine_sources(tmp_path)
    monkeypatch.setenv(sources.OVERRIDE, "deb http://m/debian bookworm main\n")
    assert sources.machine_sources(tmp_path) == ["deb http://m/debian bookworm main"]


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("kubemint/kubemint:0.1.0", "docker.io/kubemint/kubemint:0.1.0"),
        ("busybox", "docker.io/library/busybox:latest"),
        ("localhost/kubemint/pause:3.10.2", "localhost/kubemint/pause:3.10.2"),
        ("registry.example:5000/a/b", "registry.example:5000/a/b:latest"),
        ("docker.io/kubemint/kubemint:0.1.0", "docker.io/kubemint/kubemint:0.1.0"),
    ],
)
def test_references_are_normalized_as_containerd_names_them(given: str, normal: str) -> None:
    assert archive.normalize(given) == normal


def test_the_image_is_named_what_the_chart_and_the_examples_run() -> None:
    assert chart_reference() == REFERENCE
    examples = (ROOT / "examples" / "calendar").glob("*.yaml")
    named = {
        archive.normalize(line.split("image:", 1)[1].strip())
        for path in examples
        for line in path.read_text().splitlines()
        if "image: kubemint/" in line and not line.lstrip().startswith("#")
    }
    assert named == {REFERENCE}


def test_the_archive_names_its_manifest_for_containerd(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    manifest = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:ab"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))
    assert archive.name_layout(layout, REFERENCE) == "sha256:ab"
    archive.write_archive(layout, tmp_path / "x.oci.tar")
    index = archive.read_index(tmp_path / "x.oci.tar")
    annotations = index["manifests"][0]["annotations"]  # type: ignore[index]
    assert annotations == {
        "io.containerd.image.name": REFERENCE,
        "org.opencontainers.image.ref.name": "0.1.0",
    }
    with tarfile.open(tmp_path / "x.oci.tar") as tar:
        assert sorted(tar.getnames()) == ["index.json", "oci-layout"]


def test_a_layout_with_several_manifests_is_refused(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text(json.dumps({"manifests": [{}, {}]}))
    with pytest.raises(ValueError, match="want one manifest"):
        archive.name_layout(tmp_path, REFERENCE)
