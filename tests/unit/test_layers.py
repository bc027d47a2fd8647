"""The layer contracts in pyproject.toml hold, and they do bite: a copy of the package with one
import across the layers (the pure API importing the web adapter) breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "operator")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "operator" / "kubemint", tmp_path / "operator" / "kubemint")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_its_layers(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("api/meta.py", "import kubemint.server.app", "kubemint's layers BROKEN"),
        ("store/snapshot.py", "import kubemint.reconcile.checks", "kubemint's layers BROKEN"),
        ("oauth/tokens.py", "import joserfc", "only crypto/ speaks JOSE BROKEN"),
        ("reconcile/checks.py", "import kopf", "no framework and no Kubernetes client BROKEN"),
        (
            "server/app.py",
            "import kubernetes",
            "talk to the Kubernetes API itself (store/ does) BROKEN",
        ),
    ],
)
def test_an_import_across_the_layers_fails_the_lint(
    tree: Path, module: str, line: str, contract: str
) -> None:
    path = tree / "operator" / "kubemint" / module
    path.write_text(path.read_text() + f"\n{line}  # deliberately broken\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert contract in result.stdout, result.stdout
