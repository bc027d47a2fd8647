"""The pod network: Debian's CNI `bridge` plugin (`cni0`, host-local IPAM) plus `portmap`.

No overlay and no masquerading: pods talk to each other and to the node across `cni0`, and the
default route ends on the node's port-less bridge, so nothing leaves the sandbox.
"""

from __future__ import annotations

import ipaddress
import json


def render_conflist(pod_cidr: str, name: str = "kubemint-node") -> str:
    gateway = str(ipaddress.ip_network(pod_cidr)[1])
    conflist = {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,  # a pod reaching itself through its own Service
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr, "gateway": gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conflist, indent=2) + "\n"
