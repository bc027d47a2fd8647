"""The README's quick start, word for word: `make run` in one shell, then every command of the
second block in another, exactly as written (only the printed KUBECONFIG path filled in)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubemint.devcluster import ControlPlane
from tests.integration.test_dev_up import LineReader, _processes_mentioning

REPO = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"^export KUBECONFIG=/dev/shm/kubemint-cp-…/kubeconfig\b.*$", re.M)


def quickstart_blocks(readme: str) -> list[str]:
    """The ```sh blocks of the "## Quick start" section."""
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def test_the_quick_start_has_the_expected_shape() -> None:
    blocks = quickstart_blocks((REPO / "README.md").read_text())
    assert len(blocks) == 2
    assert blocks[0].strip() == "make run"
    assert len(PLACEHOLDER.findall(blocks[1])) == 1


@pytest.fixture
def make_run(cluster: ControlPlane) -> Iterator[str]:
    """`make run` in the checkout (binaries from the session's, so nothing is rebuilt)."""
    env = {**os.environ, "KUBEBUILDER_ASSETS": str(cluster.binaries.directory)}
    env.pop("KUBECONFIG", None)
    with subprocess.Popen(
        ["make", "run"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,  # Ctrl-C goes to the whole foreground group, as in a shell
    ) as proc:
        try:
            kubeconfig = LineReader(proc).wait_for("KUBECONFIG=", timeout=180)
            yield kubeconfig
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=60) in (0, -signal.SIGINT)  # make dies of the Ctrl-C
            deadline = time.monotonic() + 30
            while Path(kubeconfig).exists():  # `kubemint dev up` cleaning up after itself
                assert time.monotonic() < deadline, "make run left its work directory behind"
                time.sleep(0.2)
            assert _processes_mentioning(str(Path(kubeconfig).parent)) == []
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_the_quick_start_works_word_for_word(make_run: str) -> None:
    script = quickstart_blocks((REPO / "README.md").read_text())[1]
    script = PLACEHOLDER.sub(f"export KUBECONFIG={make_run}", script)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "VIRTUAL_ENV")}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    lines = result.stdout.splitlines()
    response = json.loads(next(line for line in lines if line.startswith('{"access_token"')))
    assert (response["token_type"], response["scope"]) == ("Bearer", "event.view")
    verified = json.loads(next(line for line in lines if line.startswith('{"aud"')))
    assert verified["aud"] == "https://calendar.example.com"
    assert verified["client_id"] == verified["sub"] == "tasks.task-service"
    assert verified["scope"] == "event.view"
    assert "oauth2client.kubemint.io/task-service condition met" in result.stdout
    assert "FIELDS:" in result.stdout  # kubectl explain
