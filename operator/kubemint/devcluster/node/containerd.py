"""containerd's configuration for the node (containerd 2.4, config schema 3).

Its root, state and socket are the default paths, which inside the sandbox are private tmpfs
(sandbox_init.py): the image store and every container's files vanish with the sandbox.
"""

from __future__ import annotations

from pathlib import Path

SOCKET = "/run/containerd/containerd.sock"
OPT_DIR = "/var/lib/containerd/opt"  # private tmpfs in the sandbox
NAMESPACE = "k8s.io"  # the containerd namespace the CRI plugin (and so the kubelet) uses


def render_config(*, pause_image: str, cni_conf_dir: Path, cni_bin_dir: Path, runc: Path) -> str:
    return f"""\
# Written by kubemint.devcluster.node.containerd. Schema 3; containerd 2.4 migrates it in
# memory (it logs "Configuration migrated from version 3", harmless).
version = 3
imports = []  # never a host containerd's drop-ins
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "{SOCKET}"

[plugins.'io.containerd.internal.v1.opt']
  # Its default, /opt/containerd, is on the host (/opt is not private in the sandbox).
  path = "{OPT_DIR}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    # Pinned: the kubelet's image GC keeps it; there is no registry to pull it again from.
    sandbox = "{pause_image}"

[plugins.'io.containerd.cri.v1.runtime']
  # No CAP_SYS_RESOURCE on these machines: a negative oom_score_adj (the pause container's -998)
  # makes runc fail with "can't get final child's PID from pipe: EOF". Clamp it instead.
  restrict_oom_score_adj = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{cni_bin_dir}"]
    conf_dir = "{cni_conf_dir}"
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
"""
