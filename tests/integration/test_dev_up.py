"""`kubemint dev up`: prints KUBECONFIG, serves the CRDs, and leaves no process behind."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubemint.devcluster import ControlPlane

CRD_NAMES = {
    "accessrules.kubemint.io",
    "oauth2clients.kubemint.io",
    "serviceaccounts.kubemint.io",
    "signingkeys.kubemint.io",
}


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line or environment contains `text` (the dev cluster's unique work
    directory: in the control plane's arguments, in the operator's KUBECONFIG)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _wait_for_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(prefix):
                return line.strip()
            if not line and proc.poll() is not None:
                break
    raise AssertionError(f"no {prefix!r} line; exit code {proc.poll()}")


@pytest.fixture
def dev_up(cluster: ControlPlane) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A running `kubemint dev up` (after the session cluster proved the binaries work)."""
    env = {**os.environ, "KUBEBUILDER_ASSETS": str(cluster.binaries.directory)}
    with subprocess.Popen(
        [sys.executable, "-m", "kubemint", "dev", "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as proc:
        try:
            line = _wait_for_line(proc, "KUBECONFIG=", timeout=120)
            yield proc, Path(line.removeprefix("KUBECONFIG="))
        finally:
            if proc.poll() is None:
                proc.kill()


def test_dev_up_serves_the_crds_and_cleans_up_on_sigterm(
    cluster: ControlPlane, dev_up: tuple[subprocess.Popen[str], Path]
) -> None:
    proc, kubeconfig = dev_up
    crds = subprocess.run(
        [
            str(cluster.binaries.kubectl),
            "--kubeconfig",
            str(kubeconfig),
            "get",
            "crds",
            "-o",
            "name",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert {
        line.removeprefix("customresourcedefinition.apiextensions.k8s.io/")
        for line in crds.stdout.split()
    } == CRD_NAMES
    workdir = str(kubeconfig.parent)
    # etcd, kube-apiserver, kube-controller-manager, kubemint operator
    assert len(_processes_mentioning(workdir)) == 4

    kubectl = [str(cluster.binaries.kubectl), "--kubeconfig", str(kubeconfig)]
    subprocess.run(
        [*kubectl, "apply", "-f", "examples/quickstart/"], check=True, capture_output=True
    )
    deadline = time.monotonic() + 30
    while subprocess.run(
        [*kubectl, "get", "secret", "task-service-credentials", "-n", "tasks"], capture_output=True
    ).returncode:
        assert time.monotonic() < deadline, "the operator did not write the client's Secret"
        time.sleep(0.3)

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert _processes_mentioning(workdir) == []
    assert not kubeconfig.parent.exists()


def test_dev_up_killed_outright_takes_its_children_with_it(
    dev_up: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, kubeconfig = dev_up
    workdir = str(kubeconfig.parent)
    assert _processes_mentioning(workdir)
    proc.kill()  # SIGKILL: no Python cleanup runs; the kernel's parent-death signal must
    proc.wait()
    deadline = time.monotonic() + 15
    while _processes_mentioning(workdir):
        assert time.monotonic() < deadline, "children outlived a SIGKILLed dev up"
        time.sleep(0.2)
