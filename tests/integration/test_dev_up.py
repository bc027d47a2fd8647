"""`kubemint dev up`: prints KUBECONFIG, serves the CRDs, and leaves no process behind."""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubemint.config import ServerSettings
from kubemint.devcluster import ControlPlane

CRD_NAMES = {
    "accessrules.kubemint.io",
    "oauth2clients.kubemint.io",
    "serviceaccounts.kubemint.io",
    "signingkeys.kubemint.io",
    "trustedissuers.kubemint.io",
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


class LineReader:
    """Lines of a child's stdout, read on a thread (select() cannot see Python's buffer)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self.lines.put(line)
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            if line.startswith(prefix):
                return line.strip().removeprefix(prefix)
        raise AssertionError(f"no {prefix!r} line within {timeout:.0f}s")


@dataclass
class DevUp:
    proc: subprocess.Popen[str]
    kubeconfig: Path
    issuer: str
    token_url: str


@pytest.fixture
def dev_up(cluster: ControlPlane) -> Iterator[DevUp]:
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
            reader = LineReader(proc)
            kubeconfig = reader.wait_for("KUBECONFIG=", timeout=120)
            issuer = reader.wait_for("ISSUER=", timeout=10)
            token_url = reader.wait_for("TOKEN_URL=", timeout=10)
            yield DevUp(proc, Path(kubeconfig), issuer, token_url)
        finally:
            if proc.poll() is None:
                proc.kill()


def test_dev_up_issues_tokens_for_the_quickstart_and_cleans_up_on_sigterm(
    cluster: ControlPlane, dev_up: DevUp
) -> None:
    kubectl = [str(cluster.binaries.kubectl), "--kubeconfig", str(dev_up.kubeconfig)]
    crds = subprocess.run(
        [*kubectl, "get", "crds", "-o", "name"], capture_output=True, text=True, check=True
    )
    prefix = "customresourcedefinition.apiextensions.k8s.io/"
    assert {line.removeprefix(prefix) for line in crds.stdout.split()} == CRD_NAMES
    workdir = str(dev_up.kubeconfig.parent)
    # etcd, kube-apiserver, kube-controller-manager, kubemint operator, kubemint token-server
    # and the token server's CEL condition workers (they inherit its KUBECONFIG)
    workers = ServerSettings.__dataclass_fields__["condition_workers"].default
    assert len(_processes_mentioning(workdir)) == 5 + workers

    subprocess.run(
        [*kubectl, "apply", "-f", "examples/quickstart/"], check=True, capture_output=True
    )
    deadline = time.monotonic() + 30
    data: dict[str, str] = {}
    while not data:
        result = subprocess.run(
            [*kubectl, "get", "secret", "task-service-credentials", "-n", "tasks", "-o", "json"],
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            raw = json.loads(result.stdout)["data"]
            data = {k: base64.b64decode(v).decode() for k, v in raw.items()}
        assert time.monotonic() < deadline, "the operator did not write the client's Secret"
        time.sleep(0.3)
    assert data["token-url"] == dev_up.token_url

    form = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "scope": "event.view"}
    ).encode()
    auth = base64.b64encode(f"{data['client-id']}:{data['client-secret']}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 — the dev server's http://127.0.0.1 URL
        dev_up.token_url,
        data=form,
        headers={
            "Authorization": "Basic " + auth,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    body: dict[str, object] = {}
    while "access_token" not in body:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                body = json.load(response)
        except urllib.error.HTTPError:
            assert time.monotonic() < deadline + 30, "no token from the dev token server"
            time.sleep(0.3)
    assert body["scope"] == "event.view"

    dev_up.proc.send_signal(signal.SIGTERM)
    assert dev_up.proc.wait(timeout=60) == 0
    assert _processes_mentioning(workdir) == []
    assert not dev_up.kubeconfig.parent.exists()


def test_dev_up_killed_outright_takes_its_children_with_it(dev_up: DevUp) -> None:
    workdir = str(dev_up.kubeconfig.parent)
    assert _processes_mentioning(workdir)
    dev_up.proc.kill()  # SIGKILL: no Python cleanup runs; the kernel's parent-death signal must
    dev_up.proc.wait()
    deadline = time.monotonic() + 15
    while _processes_mentioning(workdir):
        assert time.monotonic() < deadline, "children outlived a SIGKILLed dev up"
        time.sleep(0.2)
