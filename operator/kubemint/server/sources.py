"""The address a request comes from, seen through trusted proxies.

Behind an ingress every request arrives from the ingress controller's address; limiting
failed authentications per that address would let one attacker lock every external client
out. When the peer is a trusted proxy, the source is the rightmost X-Forwarded-For entry
that is not itself a trusted proxy (entries further left were written by the client and
prove nothing). With no trusted proxies configured, X-Forwarded-For is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from kubemint.config import Network


def source_address(peer: str, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str:
    """`peer`, or the client address the trusted proxies in front of us recorded."""
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    source = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # garbage: stop at the last proxy we could trust
        source = hop
        if not _trusted(hop, trusted):
            break
    return source


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
