"""The node's cgroup directories: created before the kubelet starts, removed after it is gone.

This machine has cgroup v1 (its init holds the controllers, so cgroup v2 is impossible; see
NODE.md §2), and cgroup directories outlive the processes in them. The kubelet's `cgroupRoot` is
therefore one name per node (`/kubemint-node-…`), pre-created in every hierarchy and removed
leaf-first at teardown; a later start removes the trees of nodes whose owner was killed.

The kubelet's cgroupfs driver takes one path for all hierarchies, so the root sits at the top of
each hierarchy rather than inside the harness's own cgroups (which differ per hierarchy here).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")


def hierarchies(mountinfo: str | None = None) -> list[Path]:
    """Mount points of the cgroup (v1) and cgroup2 hierarchies, each once."""
    text = mountinfo if mountinfo is not None else MOUNTINFO.read_text()
    seen: dict[str, Path] = {}
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split(" ", 1)[0]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        fields = left.split()
        root, mount_point = fields[3], fields[4]
        if root != "/":
            continue  # a bind of a sub-cgroup, not the hierarchy itself
        key = right.split()[-1] if fstype == "cgroup" else "cgroup2"  # super options
        seen.setdefault(key, Path(mount_point))
    return sorted(seen.values())


def create(name: str) -> list[Path]:
    """`<hierarchy>/<name>` in every hierarchy (cpuset's needs its cpus and mems filled in)."""
    made = []
    for hierarchy in hierarchies():
        directory = hierarchy / name
        directory.mkdir(exist_ok=True)
        made.append(directory)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / knob).exists() and (directory / knob).exists():
                (directory / knob).write_text((hierarchy / knob).read_text())
    return made


def existing(name: str) -> list[Path]:
    return [h / name for h in hierarchies() if (h / name).is_dir()]


def remove(name: str, timeout: float = 10.0) -> list[Path]:
    """Remove every `<hierarchy>/<name>` tree leaf-first; return what is left after `timeout`
    (a directory stays busy while its last processes are still exiting)."""
    deadline = time.monotonic() + timeout
    while True:
        left: list[Path] = []
        for tree in existing(name):
            for directory in sorted(_dirs(tree), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(FileNotFoundError):
                    try:
                        directory.rmdir()
                    except OSError:
                        left.append(directory)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def names(prefix: str) -> set[str]:
    """Top-level cgroup names starting with `prefix` in any hierarchy."""
    found: set[str] = set()
    for hierarchy in hierarchies():
        with contextlib.suppress(OSError):
            found.update(e.name for e in os.scandir(hierarchy) if e.name.startswith(prefix))
    return found


def _dirs(tree: Path) -> list[Path]:
    out = [tree]
    for parent, subdirs, _files in os.walk(tree):
        out.extend(Path(parent, d) for d in subdirs)
    return out
