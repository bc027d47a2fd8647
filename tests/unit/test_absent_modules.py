"""Every kubemint module imports with only what the image has: the standard library and the
distributions of requirements/image.txt (the lock the Dockerfile installs).

Like kopf's test_absent_modules.py, a fresh interpreter hides every other installed module (the
dev extras: pytest, httpx2, mypy, ...) behind a meta-path finder, then imports each module of
the package. A module imported by kubemint but declared only as a development dependency (httpx
once was) fails here with ModuleNotFoundError, as it would in the image's `kubemint token`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "image.txt"

# Run in a new interpreter: argv[1] is the JSON list of the distributions allowed to import.
HIDING_IMPORTER = r"""
import importlib, importlib.machinery, importlib.metadata, json, pkgutil, re, site, sys

def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()

allowed = {canonical(name) for name in json.loads(sys.argv[1])}
owners = importlib.metadata.packages_distributions()
installed = tuple(site.getsitepackages() + [site.getusersitepackages()])

def installed_location(name):
    # Where the path finder would find a top-level module, if in site-packages.
    spec = importlib.machinery.PathFinder.find_spec(name)
    if spec is None:
        return None
    places = [spec.origin or "", *(spec.submodule_search_locations or [])]
    return next((p for p in places if p.startswith(installed)), None)

class HideUndeclared:
    # Refuses a top-level module from site-packages unless an allowed distribution owns it
    # (the stdlib and kubemint's own source tree live elsewhere). Raising, not returning None,
    # keeps the later finders from finding it.
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if name != top or top in sys.stdlib_module_names or top == "kubemint":
            return None
        provided_by = {canonical(d) for d in owners.get(top, [])}
        if provided_by & allowed or installed_location(top) is None:
            return None
        raise ModuleNotFoundError(
            f"No module named {name!r} (hidden: from {sorted(provided_by) or 'site-packages'},"
            " which is not in the image's lock)", name=name)

sys.meta_path.insert(0, HideUndeclared())
import kubemint
# argv[2], if given: the modules to import; else every module but the __main__ ones (importing
# one runs its command).
walked = pkgutil.walk_packages(kubemint.__path__, "kubemint.")
names = sys.argv[2:] or sorted(m.name for m in walked if not m.name.endswith(".__main__"))
failures = []
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failures.append(f"{name}: {type(exc).__name__}: {exc}")
print(len(names))
sys.exit("\n".join(failures) or None)
"""


def locked_distributions(text: str) -> list[str]:
    """The distribution names a pip-compile lock pins (`name==version`)."""
    return re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", text, re.MULTILINE)


def import_everything(allowed: list[str], *modules: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HIDING_IMPORTER, json.dumps(allowed), *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_module_imports_with_only_the_locked_distributions() -> None:
    allowed = locked_distributions(LOCK.read_text())
    assert "kopf" in allowed, "the lock reader found no pins: update locked_distributions"
    result = import_everything(allowed)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) > 50, result.stdout  # it did walk the package


@pytest.mark.parametrize(
    ("dropped", "module", "importer"),
    [("starlette", "starlette", "kubemint.server.app"), ("httpx", "httpx", "kubemint.verify")],
)
def test_a_module_missing_from_the_lock_fails_the_import(
    dropped: str, module: str, importer: str
) -> None:
    allowed = [d for d in locked_distributions(LOCK.read_text()) if d.lower() != dropped]
    assert len(allowed) < len(locked_distributions(LOCK.read_text())), f"{dropped} not locked"
    result = import_everything(allowed, importer)
    assert result.returncode != 0
    assert f"No module named '{module}" in result.stderr, result.stderr[-3000:]


def test_development_tools_are_hidden() -> None:
    # pytest is installed here (this test runs under it) but is in no lock.
    code = HIDING_IMPORTER.replace("import kubemint\n", "import pytest\n", 1)
    allowed = locked_distributions(LOCK.read_text())
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(allowed)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "No module named 'pytest'" in result.stderr, result.stderr[-3000:]
