"""Content cache keys of the images: they change exactly when what goes into an image does.

The kubemint image is a function of the Dockerfile, the files it copies from the build context
(pyproject.toml, README.md, requirements/image.txt and operator/, less what .dockerignore leaves
out), .dockerignore itself, the base image and the build's arguments. Nothing else in the
checkout (tests/, charts/, docs/, bytecode, file times) changes the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

# What the Dockerfile copies from the build context (and the context's own filter).
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")
LOCK = "requirements/image.txt"
SOURCE_DIR = "operator"
# .dockerignore's `**/__pycache__`, `**/*.py[cod]` and `**/*.egg-info`.
IGNORED_DIRS = ("__pycache__",)
IGNORED_SUFFIXES = (".pyc", ".pyo", ".pyd", ".egg-info")


def context_files(repo: Path) -> Iterator[Path]:
    """The files of the checkout that reach the image, in a stable order."""
    for name in (*CONTEXT_FILES, LOCK):
        yield repo / name
    for path in sorted((repo / SOURCE_DIR).rglob("*")):
        relative = path.relative_to(repo)
        if any(part in IGNORED_DIRS or part.endswith(IGNORED_SUFFIXES) for part in relative.parts):
            continue
        if path.is_file():
            yield path


def digest(parts: Mapping[str, object]) -> str:
    """sha256 of a canonical JSON rendering of `parts`."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def context_digest(repo: Path) -> str:
    """sha256 over the context files' paths, executable bits and contents."""
    hasher = hashlib.sha256()
    for path in context_files(repo):
        relative = path.relative_to(repo).as_posix()
        executable = path.stat().st_mode & 0o111 != 0
        content = hashlib.sha256(path.read_bytes()).hexdigest()
        hasher.update(f"{relative}\0{int(executable)}\0{content}\n".encode())
    return hasher.hexdigest()


def kubemint_key(repo: Path, *, base: str, build_args: Mapping[str, str], reference: str) -> str:
    """The cache key of the kubemint image built from `repo` on the base image `base`."""
    return digest(
        {
            "context": context_digest(repo),
            "base": base,
            "build_args": dict(build_args),
            "reference": reference,
        }
    )


def base_key(*, suite: str, packages: Sequence[str], sources: Sequence[str], recipe: str) -> str:
    """The cache key of the base image: its suite, package list, mirrors and recipe."""
    return digest(
        {"suite": suite, "packages": sorted(packages), "sources": list(sources), "recipe": recipe}
    )
