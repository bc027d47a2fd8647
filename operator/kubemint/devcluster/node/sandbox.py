"""The node's sandbox: its own mount, network and PID namespaces, with a PID-1 init.

Every process of the node tier, the control plane included, runs inside (`command()` wraps a
command line in nsenter). The host keeps only the state directory and a relay on 127.0.0.1.
Nothing outlives its owner:

- the sandbox's unshare dies with the Python process that started it (PR_SET_PDEATHSIG), its
  --kill-child takes the init down with it, and the kernel then kills every process of the PID
  namespace and drops the mount and network namespaces;
- what the kernel does not clean up, the node's cgroup directories (cgroups.py) and its state
  directory, is removed at teardown, and by `clean_stale()` at the next start after a run that
  was killed before it could clean up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from kubemint.devcluster.node import cgroups
from kubemint.devcluster.node.network import NODE_IP, NODE_PREFIX
from kubemint.devcluster.processes import ManagedProcess

STATE_PREFIX = "kubemint-node-"
INIT = Path(__file__).with_name("sandbox_init.py")
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


class SandboxError(RuntimeError):
    """The sandbox could not be set up; the message carries its log."""


def state_parent() -> Path:
    """tmpfs when available (etcd and the image store are much faster there)."""
    shm = Path("/dev/shm")  # noqa: S108 — mkdtemp makes a private 0700 directory in it
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def make_state_dir() -> Path:
    """A fresh state directory, recording its owner so a later run can tell it is stale."""
    directory = Path(tempfile.mkdtemp(prefix=STATE_PREFIX, dir=state_parent()))
    (directory / "owner.pid").write_text(str(os.getpid()))
    return directory


def clean_stale(grace: float = 60.0) -> list[str]:
    """Remove what killed runs left: state directories whose owner is gone and the cgroup trees
    of nodes without a live state directory. Returns the names cleaned."""
    cleaned = []
    live: set[str] = set()
    for parent in {state_parent(), Path(tempfile.gettempdir())}:
        for directory in parent.glob(STATE_PREFIX + "*"):
            if _owner_alive(directory, grace):
                live.add(directory.name)
            else:
                shutil.rmtree(directory, ignore_errors=True)
                cleaned.append(directory.name)
    for name in cgroups.names(STATE_PREFIX) - live:
        cgroups.remove(name, timeout=2.0)
        cleaned.append(name)
    return sorted(set(cleaned))


def _owner_alive(directory: Path, grace: float) -> bool:
    try:
        owner = int((directory / "owner.pid").read_text())
    except (OSError, ValueError):
        # Being created right now by another run, or broken long ago.
        with contextlib.suppress(OSError):
            return time.time() - directory.stat().st_mtime < grace
        return False
    return pid_alive(owner)


def pid_alive(pid: int) -> bool:
    """True for a running process; False for none or a zombie (kill -0 succeeds on zombies)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


class Sandbox:
    """The namespaces and their init; `command()` runs things inside."""

    def __init__(self, state_dir: Path, path_dirs: Sequence[Path] = ()) -> None:
        self.state_dir = state_dir
        self.path = ":".join([*(str(d) for d in path_dirs), *SYSTEM_PATH])
        self.pid1 = 0
        self._ready = state_dir / "sandbox.ready"
        self._process = ManagedProcess(
            "sandbox",
            [
                "unshare",
                "--mount",
                "--net",
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                sys.executable,
                "-I",
                str(INIT),
                str(self._ready),
                NODE_IP,
                str(NODE_PREFIX),
            ],
            state_dir / "sandbox.log",
        )

    def start(self, timeout: float = 15.0) -> None:
        self._process.start()
        deadline = time.monotonic() + timeout
        while not self._ready.exists():
            if not self._process.alive():
                raise SandboxError(f"the sandbox init exited:\n{self._process.log_tail()}")
            if time.monotonic() > deadline:
                raise SandboxError(f"the sandbox was not ready in {timeout:.0f}s")
            time.sleep(0.02)
        unshare = self._process.pid
        assert unshare is not None
        children = Path(f"/proc/{unshare}/task/{unshare}/children").read_text().split()
        if len(children) != 1:
            raise SandboxError(f"unshare {unshare} has children {children}, expected its init")
        self.pid1 = int(children[0])
        (self.state_dir / "sandbox.pid").write_text(str(self.pid1))

    def alive(self) -> bool:
        return self.pid1 != 0 and pid_alive(self.pid1)

    def net_namespace(self) -> str:
        """The sandbox's network namespace (`net:[inode]`), to check it is gone afterwards."""
        return os.readlink(f"/proc/{self.pid1}/ns/net")

    def env(self) -> dict[str, str]:
        """The environment of processes inside: nothing of the caller's but a PATH."""
        return {"PATH": self.path, "HOME": "/root", "LANG": "C.UTF-8"}

    def command(self, argv: Sequence[str], *, pid: bool = True) -> list[str]:
        """`argv` run in the sandbox's mount and network (and, by default, PID) namespaces.

        Without the PID namespace nsenter execs in place (no fork), so the process keeps our
        PR_SET_PDEATHSIG: used for the relay."""
        assert self.pid1, "sandbox not started"
        flags = ["--mount", "--net", *(["--pid"] if pid else [])]
        return ["nsenter", f"--target={self.pid1}", *flags, "--", *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        stdin_file: Path | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a command inside and wait for it (stdin from bytes or streamed from a file)."""
        handle = stdin_file.open("rb") if stdin_file else None
        try:
            return subprocess.run(
                self.command(argv),
                input=stdin,
                stdin=handle,
                capture_output=True,
                env=self.env(),
                timeout=timeout,
                check=False,
            )
        finally:
            if handle:
                handle.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGKILL the init: the kernel kills the whole PID namespace, containers included."""
        if self.pid1 and pid_alive(self.pid1):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, signal.SIGKILL)
            deadline = time.monotonic() + timeout
            while pid_alive(self.pid1) and time.monotonic() < deadline:
                time.sleep(0.02)
        self._process.stop(timeout)

    def log_tail(self) -> str:
        return self._process.log_tail()
