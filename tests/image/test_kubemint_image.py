"""The kubemint image built from the repository's Dockerfile runs as the chart runs it.

The image is built (or taken from the cache: minutes the first time, nothing afterwards) by
kubemint.devcluster.image, the same archive a node imports; its layers are unpacked and its
commands run as its USER (65532) on a read-only root with only the image's environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kubemint import __version__
from kubemint.devcluster.image import KubemintImage, build_image, chart_reference
from kubemint.devcluster.image.archive import read_index
from tests.image.rootfs import Rootfs, read_image, run, unpack

ROOT = Path(__file__).resolve().parents[2]
VALUES = yaml.safe_load((ROOT / "charts" / "kubemint" / "values.yaml").read_text())

# Every kubemint module imported inside the image (not __main__ ones: importing runs them);
# then facts about the interpreter that the read-only root depends on.
IMPORT_ALL = """
import importlib, importlib.util, json, os, pkgutil, sys, kubemint
walked = pkgutil.walk_packages(kubemint.__path__, "kubemint.", onerror=lambda name: None)
names = sorted(m.name for m in walked if not m.name.endswith(".__main__"))
failed, stale = {}, []
for name in names:
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
        continue
    source = getattr(module, "__file__", None)
    if source and source.endswith(".py"):
        if not os.path.exists(importlib.util.cache_from_source(source)):
            stale.append(name)
print(json.dumps({
    "modules": names, "failed": failed, "not_compiled": stale,
    "dont_write_bytecode": sys.flags.dont_write_bytecode,
    "executable": sys.executable, "real_python": os.path.realpath(sys.executable),
    "uid": os.getuid(), "gid": os.getgid(), "prefix": sys.prefix,
}))
"""


@pytest.fixture(scope="module")
def image() -> KubemintImage:
    return build_image()


@pytest.fixture(scope="module")
def rootfs(image: KubemintImage) -> Rootfs:
    return unpack(image.archive, image.digest)


def test_the_archive_is_named_what_the_chart_runs(image: KubemintImage) -> None:
    assert image.reference == chart_reference() == "docker.io/kubemint/kubemint:0.1.0"
    assert VALUES["image"]["repository"] == "kubemint/kubemint"
    (descriptor,) = read_index(image.archive)["manifests"]  # type: ignore[misc]
    assert descriptor["digest"] == image.digest
    assert descriptor["annotations"]["io.containerd.image.name"] == image.reference


def test_the_config_is_the_dockerfiles(image: KubemintImage) -> None:
    manifest, config = read_image(image.archive)
    settings = config["config"]
    assert settings["User"] == "65532:65532"
    assert settings["Entrypoint"] == ["kubemint"]
    assert settings["Cmd"] == ["token-server"]
    env = dict(entry.split("=", 1) for entry in settings["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/kubemint/bin:")
    labels = settings["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.base.name"].startswith("localhost/kubemint/python:")
    # The base's one layer and the final stage's COPY of the venv: nothing else.
    assert len(manifest["layers"]) == 2, json.dumps(manifest["layers"])


def test_kubemint_help_runs_as_the_images_user(rootfs: Rootfs) -> None:
    result = run(rootfs, ["--help"])
    assert result.returncode == 0, result.stderr
    for command in ("operator", "token-server", "token"):
        assert command in result.stdout
    version = run(rootfs, ["--version"])
    assert version.returncode == 0, version.stderr
    assert __version__ in version.stdout + version.stderr


def test_kubemint_token_runs_in_the_image(rootfs: Rootfs) -> None:
    result = run(rootfs, ["token", "--help"])
    assert result.returncode == 0, result.stderr
    assert "--watch" in result.stdout
    # The token sidecar of examples/calendar gets as far as reading its mounted Secret, which
    # needs kubemint.client and so httpx (on the lock without httpx: ModuleNotFoundError).
    result = run(rootfs, ["token", "--credentials", "/tmp/no-secret"])
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("kubemint token: /tmp/no-secret/"), result.stderr
    assert "Traceback" not in result.stderr


def test_every_module_imports_in_the_image_on_a_read_only_root(rootfs: Rootfs) -> None:
    result = run(rootfs, ["-c", IMPORT_ALL], entrypoint=["python"])
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout.splitlines()[-1])
    assert len(facts["modules"]) > 50, facts["modules"]
    assert "kubemint.client" in facts["modules"]
    assert facts["failed"] == {}
    # pip compiled everything in the builder, and Python does not try to write bytecode.
    assert facts["not_compiled"] == []
    assert facts["dont_write_bytecode"] == 1
    assert (facts["uid"], facts["gid"]) == (65532, 65532)
    # The venv is valid on this base: its python is the base's Debian interpreter.
    assert facts["prefix"] == "/opt/kubemint"
    assert facts["real_python"].startswith("/usr/bin/python3.")


def test_the_root_is_read_only_and_tmp_is_writable(rootfs: Rootfs) -> None:
    # The runner's own check: without it the read-only tests above would prove nothing.
    probe = (
        "import errno\n"
        "try:\n    open('/opt/kubemint/probe', 'w')\n"
        "except OSError as exc:\n    print(errno.errorcode[exc.errno])\n"
        "open('/tmp/probe', 'w').write('x')\nprint('tmp ok')\n"
    )
    as_root = Rootfs(rootfs.path, {**rootfs.config, "User": "0:0"})
    result = run(as_root, ["-c", probe], entrypoint=["python"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["EROFS", "tmp", "ok"]
