"""Source addresses through trusted proxies: one attacker behind the ingress must not lock
every external client out, and a client cannot pick its own source address."""

from __future__ import annotations

import pytest

from kubemint.config import parse_networks
from kubemint.server.sources import source_address

PROXIES = parse_networks("10.0.0.0/8, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.1.2.3", ["203.0.113.7"], "203.0.113.7"),  # ingress in front of a client
        ("10.1.2.3", ["203.0.113.7, 10.9.9.9"], "203.0.113.7"),  # two proxy hops
        ("10.1.2.3", ["203.0.113.7", "10.9.9.9"], "203.0.113.7"),  # repeated header
        ("10.1.2.3", ["198.51.100.1, 203.0.113.7"], "203.0.113.7"),  # client-forged left part
        ("10.1.2.3", [], "10.1.2.3"),  # the proxy itself
        ("10.1.2.3", ["10.9.9.9"], "10.9.9.9"),  # only proxies: the leftmost one
        ("10.1.2.3", ["garbage, 203.0.113.7"], "203.0.113.7"),
        ("10.1.2.3", ["203.0.113.7, garbage"], "10.1.2.3"),  # stop at what can't be read
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # untrusted peer: header ignored
        ("fd00::1", ["2001:db8::5"], "2001:db8::5"),
    ],
)
def test_source_address(peer: str, forwarded: list[str], expected: str) -> None:
    assert source_address(peer, forwarded, PROXIES) == expected


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert source_address("10.1.2.3", ["203.0.113.7"], ()) == "10.1.2.3"


def test_bad_networks_are_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        parse_networks("10.0.0.0/8,10.0.0.0/33")
    assert parse_networks(" , ") == ()
