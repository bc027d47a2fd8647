"""The image tools: what is missing is found, and without root the error says what to run."""

from __future__ import annotations

import pytest

from kubemint.devcluster.image import tools
from kubemint.devcluster.image.tools import ImageError


def test_missing_names_the_packages_whose_command_is_absent() -> None:
    packages = {"coreutils": "ls", "kubemint-absent": "no-such-command-kubemint"}
    assert tools.missing(packages) == ["kubemint-absent"]
    assert tools.missing({"coreutils": "ls"}) == []


def test_nothing_is_installed_when_nothing_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("apt-get ran although nothing was missing")

    monkeypatch.setattr(tools.subprocess, "run", refuse)
    tools.ensure_packages({"coreutils": "ls"})


def test_without_root_the_error_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools.os, "geteuid", lambda: 1000)
    with pytest.raises(ImageError) as raised:
        tools.ensure_packages({"kubemint-absent": "no-such-command-kubemint"})
    assert "sudo apt-get install -y -q --no-install-recommends kubemint-absent" in str(raised.value)
