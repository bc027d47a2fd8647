"""What a node leaves on the host, looked up independently of the code that cleans it up:
processes in its PID or network namespaces, namespaces still held by a process or a mount,
mounts of its state, cgroup directories, the state directory."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from kubemint.devcluster.node import cgroups
from kubemint.devcluster.node.sandbox import pid_alive


@dataclass
class NodeTraces:
    """Identifiers of one running node, recorded while it runs."""

    state_dir: Path
    cgroup_name: str
    pid_namespace: str  # "pid:[inode]" of the sandbox
    net_namespaces: set[str] = field(default_factory=set)  # sandbox's + every pod's "net:[…]"
    host_pids: set[int] = field(default_factory=set)  # every process inside, as host PIDs


def record(state_dir: Path, cgroup_name: str, sandbox_pid: int) -> NodeTraces:
    """Every process in the sandbox's PID namespace and their descendants (containers run in
    PID namespaces of their own, children of the sandbox's), with their network namespaces."""
    traces = NodeTraces(state_dir, cgroup_name, os.readlink(f"/proc/{sandbox_pid}/ns/pid"))
    namespaces = _namespaces()
    parents = _parents()
    inside = {pid for pid, links in namespaces.items() if links.get("pid") == traces.pid_namespace}
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in inside} - inside
        inside |= more
        grew = bool(more)
    traces.host_pids = inside
    traces.net_namespaces = {namespaces[p]["net"] for p in inside if "net" in namespaces.get(p, {})}
    return traces


def leftovers(traces: NodeTraces) -> list[str]:
    """Everything of the node still on the host (empty = clean)."""
    left = [f"process {pid}" for pid in sorted(traces.host_pids) if pid_alive(pid)]
    for pid, links in _namespaces().items():
        if links.get("pid") == traces.pid_namespace and pid_alive(pid):
            left.append(f"process {pid} in the sandbox's PID namespace")
        if links.get("net") in traces.net_namespaces and pid_alive(pid):
            left.append(f"process {pid} holds {links['net']}")
    for mountinfo in Path("/proc").glob("[0-9]*/mountinfo"):
        with contextlib.suppress(OSError):
            for line in mountinfo.read_text().splitlines():
                fields = line.split()
                if fields[3] in traces.net_namespaces:
                    left.append(f"nsfs mount of {fields[3]} ({mountinfo})")
                if str(traces.state_dir) in line:
                    left.append(f"mount under the state dir ({mountinfo}): {line}")
    left += [f"cgroup {p}" for p in cgroups.existing(traces.cgroup_name)]
    if traces.state_dir.exists():
        left.append(f"state dir {traces.state_dir}")
    return left


def _parents() -> dict[int, int]:
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            out[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
    return out


def _namespaces() -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        links = {}
        for kind in ("pid", "net"):
            with contextlib.suppress(OSError):
                links[kind] = os.readlink(proc / "ns" / kind)
        if links:
            out[int(proc.name)] = links
    return out
