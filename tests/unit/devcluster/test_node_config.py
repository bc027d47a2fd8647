"""The node tier's pure parts: rendered configurations, fixed addresses, cache keys."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import tomllib
from pathlib import Path

import yaml

from kubemint.devcluster import layout
from kubemint.devcluster.binaries import KUBERNETES_MODULE, required_version
from kubemint.devcluster.controlplane import SERVICE_CIDR
from kubemint.devcluster.node import binaries as node_binaries
from kubemint.devcluster.node import cgroups, cni, containerd, coredns, kubelet, network, sandbox


def _settings() -> kubelet.KubeletSettings:
    return kubelet.KubeletSettings(
        node_name="kmnode",
        node_ip="10.200.0.1",
        port=10250,
        cgroup_root="/kubemint-node-abc",
        ca_file=Path("/s/ca.crt"),
        serving_cert=Path("/s/kubelet.crt"),
        serving_key=Path("/s/kubelet.key"),
        cluster_dns="10.0.0.10",
        cluster_domain="cluster.local",
        resolv_conf=Path("/s/resolv.conf"),
        container_runtime_endpoint="unix:///run/containerd/containerd.sock",
    )


def test_kubelet_config_fits_a_cgroup_v1_machine_and_refreshes_secrets_every_10s() -> None:
    config = kubelet.kubelet_config(_settings())
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupRoot"] == "/kubemint-node-abc"
    assert config["syncFrequency"] == kubelet.SYNC_FREQUENCY == "10s"
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["readOnlyPort"] == 0
    assert config["clusterDNS"] == ["10.0.0.10"]
    assert yaml.safe_load(kubelet.dump(config)) == config


def test_kube_proxy_uses_nftables_and_leaves_conntrack_sysctls_alone() -> None:
    config = kubelet.kube_proxy_config(
        kubeconfig=Path("/s/kp.kubeconfig"), node_name="kmnode", cluster_cidr="10.244.0.0/16"
    )
    assert config["mode"] == "nftables"
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["clientConnection"] == {"kubeconfig": "/s/kp.kubeconfig"}


def test_containerd_config_clamps_oom_score_adj_and_pins_the_pause_image() -> None:
    text = containerd.render_config(
        pause_image="localhost/kubemint/pause:3.10.2",
        cni_conf_dir=Path("/s/cni"),
        cni_bin_dir=Path("/usr/lib/cni"),
        runc=Path("/usr/sbin/runc"),
    )
    config = tomllib.loads(text)
    assert config["version"] == 3
    assert config["imports"] == []
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["cni"] == {"bin_dirs": ["/usr/lib/cni"], "conf_dir": "/s/cni", "max_conf_num": 1}
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert runc == {"BinaryName": "/usr/sbin/runc", "SystemdCgroup": False}
    images = config["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "localhost/kubemint/pause:3.10.2"
    assert config["grpc"]["address"] == containerd.SOCKET
    # Every path containerd writes is under the sandbox's private /run and /var/lib.
    assert config["plugins"]["io.containerd.internal.v1.opt"]["path"] == containerd.OPT_DIR
    for path in (config["root"], config["state"], containerd.OPT_DIR, containerd.SOCKET):
        assert path.startswith(("/var/lib/", "/run/")), path


def test_cni_bridge_has_the_pod_cidr_and_no_masquerade() -> None:
    conflist = json.loads(cni.render_conflist("10.244.0.0/24"))
    bridge, portmap = conflist["plugins"]
    assert bridge["type"] == "bridge"
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24", "gateway": "10.244.0.1"}]]
    assert portmap["type"] == "portmap"


def test_coredns_serves_the_cluster_domain_on_the_dns_ip_and_forwards_nowhere() -> None:
    docs = list(
        yaml.safe_load_all(
            coredns.render_manifests(
                image="localhost/kubemint/coredns:1.15.0-min",
                service_ip="10.0.0.10",
                cluster_domain="cluster.local",
            )
        )
    )
    kinds = {d["kind"]: d for d in docs}
    corefile = kinds["ConfigMap"]["data"]["Corefile"]
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in corefile
    assert "forward" not in corefile  # no upstream: no query leaves the sandbox
    assert kinds["Service"]["spec"]["clusterIP"] == "10.0.0.10"
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost/kubemint/coredns:1.15.0-min"
    assert container["imagePullPolicy"] == "Never"


def test_fixed_addresses_fit_the_service_cidr_the_control_plane_serves() -> None:
    services = ipaddress.ip_network(SERVICE_CIDR)
    assert ipaddress.ip_address(network.DNS_SERVICE_IP) in services
    assert str(services[1]) == network.KUBERNETES_SERVICE_IP  # what kube-apiserver allocates
    pods = ipaddress.ip_network(network.POD_CIDR)
    assert pods.subnet_of(ipaddress.ip_network(network.CLUSTER_CIDR))  # type: ignore[arg-type]
    assert not pods.overlaps(services)
    assert ipaddress.ip_address(network.NODE_IP) not in pods


def test_node_binaries_pin_the_same_kubernetes_as_the_control_plane() -> None:
    envtest = required_version(layout.envtest_module_dir() / "go.mod", KUBERNETES_MODULE)
    node = required_version(layout.node_module_dir("kube") / "go.mod", KUBERNETES_MODULE)
    assert node == envtest


def _copy_module(name: str, target: Path) -> Path:
    shutil.copytree(layout.node_module_dir(name), target)
    return target


def test_cache_keys_name_the_version_and_change_with_the_module(tmp_path: Path) -> None:
    kube = _copy_module("kube", tmp_path / "kube")
    key = node_binaries.kube_build(kube).key
    version = required_version(kube / "go.mod", KUBERNETES_MODULE)
    assert key.startswith(f"k8s-{version}_")
    assert node_binaries.kube_build(kube).key == key  # stable
    with (kube / "go.sum").open("a") as sum_file:
        sum_file.write("example.com/x v1.0.0 h1:AAAA=\n")
    assert node_binaries.kube_build(kube).key != key

    coredns_dir = _copy_module("coredns", tmp_path / "coredns")
    before = node_binaries.coredns_build(coredns_dir).key
    main = coredns_dir / node_binaries.COREDNS_MAIN
    main.write_text(main.read_text() + "\n// another plugin\n")
    assert node_binaries.coredns_build(coredns_dir).key != before


def test_containerd_is_built_without_btrfs_and_stamped_with_its_version() -> None:
    build = node_binaries.containerd_build(layout.node_module_dir("containerd"))
    assert [p.name for p in build.programs] == ["containerd", "containerd-shim-runc-v2", "ctr"]
    for program in build.programs:
        assert program.tags == ("no_btrfs",)
        assert f"version.Version={program.version}" in program.ldflags


MOUNTINFO = """\
25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory
28 25 0:25 / /sys/fs/cgroup/cpu rw,nosuid shared:12 - cgroup cgroup rw,cpu
29 25 0:26 / /sys/fs/cgroup/name=systemd rw shared:13 - cgroup cgroup rw,name=systemd
40 30 0:24 /process_api/x /mnt/x rw - cgroup cgroup rw,memory
41 30 0:24 / /mnt/memory-again rw - cgroup cgroup rw,memory
"""


def test_cgroup_hierarchies_are_each_mount_once_without_sub_cgroup_binds() -> None:
    assert cgroups.hierarchies(MOUNTINFO) == [
        Path("/sys/fs/cgroup/cpu"),
        Path("/sys/fs/cgroup/memory"),
        Path("/sys/fs/cgroup/name=systemd"),
        Path("/sys/fs/cgroup/unified"),
    ]


def test_a_zombie_is_not_alive_though_kill_0_succeeds_on_it() -> None:
    assert sandbox.pid_alive(os.getpid())
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        # Wait for the child to exit without reaping it: from then on it is a zombie.
        os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)
        os.kill(child, 0)  # still there (a zombie) ...
        assert not sandbox.pid_alive(child)  # ... but not alive
    finally:
        os.waitpid(child, 0)
    assert not sandbox.pid_alive(child)


def test_state_dirs_are_stale_only_when_their_owner_is_gone(tmp_path: Path) -> None:
    mine = tmp_path / "kubemint-node-mine"
    mine.mkdir()
    (mine / "owner.pid").write_text(str(os.getpid()))
    gone = tmp_path / "kubemint-node-gone"
    gone.mkdir()
    (gone / "owner.pid").write_text("999999999")
    fresh = tmp_path / "kubemint-node-fresh"  # being created: no owner.pid yet
    fresh.mkdir()
    assert sandbox._owner_alive(mine, grace=60)
    assert not sandbox._owner_alive(gone, grace=60)
    assert sandbox._owner_alive(fresh, grace=60)
    assert not sandbox._owner_alive(fresh, grace=0)
