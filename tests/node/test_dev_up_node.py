"""`kubemint dev up --node`: prints how to reach a Ready node, and Ctrl-C removes all of it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from kubemint.devcluster import layout, resolve_binaries
from kubemint.devcluster.node import cgroups
from tests.integration.test_dev_up import LineReader


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
            kubectl = resolve_binaries(build=False).kubectl
            listing = subprocess.run(
                [str(kubectl), f"--kubeconfig={kubeconfig}", "get", "node", node, "-o", "json"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            status = json.loads(listing.stdout)["status"]
            assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
            assert cgroups.existing(state_dir.name)

            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0
            assert proc.stderr is not None
            assert "kubemint: stopped" in proc.stderr.read()
            assert not state_dir.exists()
            assert cgroups.existing(state_dir.name) == []
        finally:
            if proc.poll() is None:
                proc.kill()
