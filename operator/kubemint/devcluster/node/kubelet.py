"""KubeletConfiguration and KubeProxyConfiguration for the node.

`syncFrequency` is 10s (default 1m): the kubelet refreshes Secret and ConfigMap volumes only on a
pod's periodic resync, so it bounds how long a rotated Secret takes to reach a mounted file
(NODE.md measured 8.6-12.9 s at 10s; expect up to 60-90 s at the default). Tests and the chart's
rotation overlap rely on that bound being short.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SYNC_FREQUENCY = "10s"


@dataclass(frozen=True)
class KubeletSettings:
    node_name: str
    node_ip: str
    port: int
    cgroup_root: str  # e.g. /kubemint-node-abc123 (cgroups.py creates and removes it)
    ca_file: Path
    serving_cert: Path
    serving_key: Path
    cluster_dns: str
    cluster_domain: str
    resolv_conf: Path  # empty: pods get no host search domains or nameservers
    container_runtime_endpoint: str


def kubelet_config(s: KubeletSettings) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # cgroup v1 machine (cgroup v2 cannot be had here, NODE.md §2): opt out of the refusal.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",  # no systemd; containerd reports the same via RuntimeConfig
        "cgroupRoot": s.cgroup_root,
        "containerRuntimeEndpoint": s.container_runtime_endpoint,
        "address": s.node_ip,
        "port": s.port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(s.serving_cert),
        "tlsPrivateKeyFile": str(s.serving_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(s.ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": s.cluster_domain,
        "clusterDNS": [s.cluster_dns],
        "resolvConf": str(s.resolv_conf),
        "staticPodPath": "",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        # A tmpfs-backed dev node: never evict for disk, and keep every (unpullable) image.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "syncFrequency": SYNC_FREQUENCY,
        "maxPods": 50,
        "serializeImagePulls": False,
    }


def kube_proxy_config(*, kubeconfig: Path, node_name: str, cluster_cidr: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "nftables",
        "clusterCIDR": cluster_cidr,
        "hostnameOverride": node_name,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # 0 = leave the conntrack sysctls alone (they are not ours to tune on this machine).
        "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "nodePortAddresses": ["primary"],
    }


def dump(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)
