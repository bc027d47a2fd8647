"""Which network addresses the token server never fetches from: one rule for the fetcher
(`kubemint.store.jwks_fetch`, on every resolved address) and the operator (a jwksUri whose
host is an IP literal is reported on the object, naming the field)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def refusal(
    address: Address, cluster: tuple[Network, ...] = (), allowed: tuple[Network, ...] = ()
) -> str | None:
    """Why the token server must not connect to `address`, or None. `cluster` are the pod and
    service networks (and other internal ranges); `allowed` are an admin's exceptions."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in n for n in allowed if n.version == address.version):
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (metadata services live there)"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast or address.is_reserved:
        return "a multicast or reserved address"
    if any(address in n for n in cluster if n.version == address.version):
        return "in the cluster's networks"
    return None


def literal_refusal(
    uri: str, cluster: tuple[Network, ...] = (), allowed: tuple[Network, ...] = ()
) -> str | None:
    """For a URI whose host is an IP address: why it would be refused (names are judged by
    what they resolve to, when fetched)."""
    try:
        host = urlsplit(uri).hostname or ""
        why = refusal(ipaddress.ip_address(host), cluster, allowed)
    except ValueError:
        return None
    return f"{host} is {why}" if why else None
