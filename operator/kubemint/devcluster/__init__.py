"""A real local control plane (etcd + kube-apiserver + kube-controller-manager).

Used by the integration tests and by `kubemint dev up`; never a mock of the Kubernetes API.
"""

from kubemint.devcluster.binaries import Binaries, resolve_binaries
from kubemint.devcluster.controlplane import ControlPlane, ControlPlaneError

__all__ = ["Binaries", "ControlPlane", "ControlPlaneError", "resolve_binaries"]
