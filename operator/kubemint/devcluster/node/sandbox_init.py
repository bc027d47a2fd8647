"""PID 1 of the node's sandbox (standard library only; run by path, not imported).

    unshare --mount --net --pid --fork --mount-proc --kill-child python sandbox_init.py \\
        READY_FILE NODE_IP PREFIX

Everything the node starts lives in these namespaces. When this process dies the kernel kills
every process of the PID namespace, and the mount and network namespaces (every overlay, tmpfs,
pod network namespace, veth, bridge and nftables rule) go with them. unshare's --kill-child
makes this process die with unshare, and unshare dies with the Python process that started it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

# Paths that containerd, runc, the kubelet and libcni write to whatever their configuration
# says (shim sockets, runc state, netns files, the NRI socket, the kubelet's hard-coded
# device-plugins directory, libcni's cache, pod logs): private tmpfs, never the host's.
PRIVATE = ("/run", "/var/lib", "/var/log")
DIRS = ("/var/lib/kubelet", "/var/lib/containerd", "/var/lib/cni", "/var/log/pods")


def run(*argv: str) -> None:
    subprocess.run(argv, check=True)


def setup(node_ip: str, prefix: str) -> None:
    run("mount", "--make-rshared", "/")  # kubelet mount propagation (unshare made / private)
    for path in PRIVATE:
        run("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", path)
    for path in DIRS:
        os.makedirs(path, exist_ok=True)
    # Loopback plus `node0`, a bridge without ports standing in for the uplink (no dummy device
    # in this kernel). It carries the node IP and the default route; packets routed to it are
    # dropped, so nothing leaves the namespace.
    run("ip", "link", "set", "lo", "up")
    run("ip", "link", "add", "node0", "type", "bridge")
    run("ip", "addr", "add", f"{node_ip}/{prefix}", "dev", "node0")
    run("ip", "link", "set", "node0", "up")
    run("ip", "route", "add", "default", "dev", "node0")
    # Per network namespace: pods' traffic through cni0 must be routed and seen by nftables.
    run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    run("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")


def main(argv: list[str]) -> int:
    ready_file, node_ip, prefix = argv[1], argv[2], argv[3]

    def leave(signum: int, frame: FrameType | None) -> None:
        os._exit(0)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    setup(node_ip, prefix)
    tmp = Path(ready_file + ".tmp")
    tmp.write_text("ready\n")
    tmp.rename(ready_file)
    while True:  # reap orphans (re-parented shims, exec'd processes)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
