"""The node tier's fixed addresses. They all live in the sandbox's own network namespace, so
several nodes on one machine do not collide and nothing here is routable from the host."""

from __future__ import annotations

import ipaddress

from kubemint.devcluster.controlplane import SERVICE_CIDR

NODE_NAME = "kmnode"
NODE_IP = "10.200.0.1"  # on `node0`, a port-less bridge: routed packets go nowhere
NODE_PREFIX = 24
POD_CIDR = "10.244.0.0/24"  # on `cni0` (the CNI bridge), gateway .1
CLUSTER_CIDR = "10.244.0.0/16"
CLUSTER_DOMAIN = "cluster.local"
APISERVER_PORT = 6443  # inside the sandbox; the host reaches it through the relay
ETCD_PORTS = (2379, 2380)
KUBELET_PORT = 10250


def service_ip(index: int) -> str:
    """The index-th address of the Service CIDR (1 = `kubernetes`, 10 = DNS, by convention)."""
    return str(ipaddress.ip_network(SERVICE_CIDR)[index])


KUBERNETES_SERVICE_IP = service_ip(1)
DNS_SERVICE_IP = service_ip(10)
ISSUER = f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}"
