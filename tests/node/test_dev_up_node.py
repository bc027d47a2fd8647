"""`kubemint dev up --node`: prints how to reach a Ready node, and Ctrl-C removes all of it
(processes, namespaces, mounts, cgroups, state; the SIGKILL ending is in test_teardown.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from kubemint.devcluster import layout, resolve_binaries
from kubemint.devcluster.node import cgroups
from kubemint.devcluster.node.images import busybox_image
from tests.integration.test_dev_up import LineReader
from tests.node import leaks

POD = """\
apiVersion: v1
kind: Pod
metadata: {{name: sleeper, namespace: kube-system}}
spec:
  containers:
  - {{name: sleeper, image: {image}, imagePullPolicy: Never, command: ["sleep", "3600"]}}
"""


def test_dev_up_node_prints_a_kubeconfig_for_a_ready_node_and_cleans_up_on_ctrl_c() -> None:
    argv = [sys.executable, "-m", "kubemint", "dev", "up", "--node"]
    with subprocess.Popen(
        argv, cwd=layout.repo_root(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            lines = LineReader(proc)
            kubeconfig = Path(lines.wait_for("KUBECONFIG=", timeout=240))
            node = lines.wait_for("NODE=", timeout=5)
            state_dir = Path(lines.wait_for("STATE_DIR=", timeout=5))
            kubectl = [str(resolve_binaries(build=False).kubectl), f"--kubeconfig={kubeconfig}"]

            def run(*args: str, stdin: str | None = None) -> str:
                return subprocess.run(
                    [*kubectl, *args],
                    input=stdin,
                    capture_output=True,
                    text=True,
                    timeout=150,
                    check=True,
                ).stdout

            status = json.loads(run("get", "node", node, "-o", "json"))["status"]
            assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
            # A pod too, so there is a container, a shim and a pod network namespace to leak.
            run("apply", "-f", "-", stdin=POD.format(image=busybox_image().name))
            run(
                "-n",
                "kube-system",
                "wait",
                "--for=condition=Ready",
                "pod/sleeper",
                "--timeout=120s",
            )
            pid1 = int((state_dir / "sandbox.pid").read_text())
            traces = leaks.record(state_dir, state_dir.name, pid1)
            assert len(traces.host_pids) >= 10, traces.host_pids
            assert len(traces.net_namespaces) >= 2, traces.net_namespaces  # sandbox's + pod's
            assert cgroups.existing(state_dir.name)

            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0
            assert proc.stderr is not None
            assert "kubemint: stopped" in proc.stderr.read()
            assert leaks.leftovers(traces) == []
        finally:
            if proc.poll() is None:
                proc.kill()
