"""A real single-node Kubernetes cluster for the node tier: containerd, kubelet, kube-proxy,
kube-scheduler, CNI and CoreDNS next to the same control plane, all inside namespaces of its
own. See `cluster.NodeCluster`; the README's "Node tier" section and docs/troubleshooting.md."""

from kubemint.devcluster.node.cluster import NodeCluster, NodeError

__all__ = ["NodeCluster", "NodeError"]
