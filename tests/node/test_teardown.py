"""A node leaves nothing behind when its owner is killed with SIGKILL: the kernel ends the
processes and namespaces at once, and the next start's stale-state cleanup removes the cgroup
directories and the state directory. (Ctrl-C, a normal exit: test_dev_up_node.py.)"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from pathlib import Path

from kubemint.devcluster import layout
from kubemint.devcluster.node import cgroups
from kubemint.devcluster.node.sandbox import clean_stale
from tests.node import leaks


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            raise AssertionError(f"the node did not come up in {timeout:.0f}s")
    finally:
        selector.close()
    return proc.stdout.readline()


def _settle(traces: leaks.NodeTraces, keep: tuple[str, ...], timeout: float = 20) -> list[str]:
    """Leftovers once the kernel has had `timeout` to finish; `keep` prefixes are not waited for."""
    deadline = time.monotonic() + timeout
    while True:
        left = [x for x in leaks.leftovers(traces) if not x.startswith(keep)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_a_killed_owner_leaves_nothing_after_the_next_start() -> None:
    argv = [sys.executable, "-m", "tests.node.run_node"]
    with subprocess.Popen(argv, cwd=layout.repo_root(), stdout=subprocess.PIPE, text=True) as proc:
        try:
            info = json.loads(_first_line(proc, timeout=240))
            traces = leaks.record(Path(info["state_dir"]), info["cgroup_name"], info["sandbox_pid"])
            # The traces are real: the control plane, node agents, shim, pause and the pod.
            assert len(traces.host_pids) >= 10, traces.host_pids
            assert len(traces.net_namespaces) >= 2, traces.net_namespaces  # sandbox's + pod's
            assert cgroups.existing(traces.cgroup_name)

            proc.kill()
            proc.wait()
            # Processes, namespaces and mounts go with the owner, by the kernel alone.
            assert _settle(traces, keep=("cgroup", "state dir")) == []
            # What only a cleanup can remove is still there, until the next start's sweep.
            assert traces.state_dir.is_dir()
            assert cgroups.existing(traces.cgroup_name)
            cleaned = clean_stale()
            assert traces.cgroup_name in cleaned
            assert traces.state_dir.name in cleaned
            assert leaks.leftovers(traces) == []
        finally:
            if proc.poll() is None:
                proc.kill()
