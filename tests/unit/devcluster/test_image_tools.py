"""The Debian packages the image builds and the node need: what is missing is found, a failed
install is retried after `apt-get update`, and without root the error says what to run."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from kubemint.devcluster import debian
from kubemint.devcluster.image import tools
from kubemint.devcluster.image.tools import ImageError

APT = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]


def test_missing_names_the_packages_whose_command_is_absent() -> None:
    packages = {"coreutils": "ls", "kubemint-absent": "no-such-command-kubemint"}
    assert tools.missing(packages) == ["kubemint-absent"]
    assert tools.missing({"coreutils": "ls"}) == []


def test_nothing_is_installed_when_nothing_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("apt-get ran although nothing was missing")

    monkeypatch.setattr(debian.subprocess, "run", refuse)
    tools.ensure_packages({"coreutils": "ls"})


def test_without_root_the_error_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debian.os, "geteuid", lambda: 1000)
    with pytest.raises(ImageError) as raised:
        tools.ensure_packages({"kubemint-absent": "no-such-command-kubemint"})
    assert "sudo apt-get install -y -q --no-install-recommends kubemint-absent" in str(raised.value)


def test_a_package_is_present_by_its_file_or_its_command(tmp_path: Path) -> None:
    marker = tmp_path / "installed"
    packages: dict[str, Path | str] = {"by-file": marker, "by-command": "ls"}
    assert debian.missing(packages) == ["by-file"]
    marker.touch()
    assert debian.missing(packages) == []


def test_a_failed_install_is_retried_after_apt_get_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[str]] = []

    def apt_get(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        # No package lists yet: install fails until `apt-get update` has run.
        ok = argv[-2] == "update" or [*APT, "update", "-q"] in calls
        return subprocess.CompletedProcess(argv, 0 if ok else 100, "", "" if ok else "E: no lists")

    monkeypatch.setattr(debian.subprocess, "run", apt_get)
    debian.apt(["install", "-y", "kubemint-absent"])
    assert calls == [
        [*APT, "install", "-y", "kubemint-absent"],
        [*APT, "update", "-q"],
        [*APT, "install", "-y", "kubemint-absent"],
    ]


def test_apt_runs_one_at_a_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`make test` builds the node's binaries and the image at once; their apt-get calls
    must not meet on dpkg's lock."""
    monkeypatch.setattr(debian, "_LOCK", tmp_path / "apt.lock")
    running: list[str] = []
    overlaps: list[list[str]] = []

    def apt_get(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        running.append(argv[-1])
        if len(running) > 1:
            overlaps.append(list(running))
        time.sleep(0.05)
        running.remove(argv[-1])
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(debian.subprocess, "run", apt_get)
    threads = [
        threading.Thread(target=debian.apt, args=(["install", "-y", f"p{n}"],)) for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
