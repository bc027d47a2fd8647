"""Issuer key sources are scheduled so that a slow one delays only itself (issue 10, finding 3):
real TLS servers (silent, dripping) declared next to a victim's, against the real scheduler."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubemint.store.issuers import KUBERNETES, IssuerKeys, uri_source
from kubemint.store.jwks_fetch import DEADLINE, FetchPolicy
from tests.jwks_servers import JWKSAuthority, JWKSServer, client_context, make_ca

FETCH_DEADLINE = 1.0
ATTACKERS = 6  # of each kind: more than the slots
WORKERS = 4


def key(kid: str) -> dict[str, Any]:
    return {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "kid": kid}]}


def eventually(probe: Callable[[], bool], within: float) -> float:
    """Seconds until `probe()` held; fails after `within`."""
    started = time.monotonic()
    while not probe():
        assert time.monotonic() - started < within, "not within the bound"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> JWKSAuthority:
    return make_ca(Path(tmp_path_factory.mktemp("jwks-ca")))


@pytest.fixture
def attackers(ca: JWKSAuthority) -> Iterator[list[JWKSServer]]:
    servers = [JWKSServer(ca, behaviour="silent").start() for _ in range(ATTACKERS)]
    servers += [JWKSServer(ca, behaviour="drip", drip_every=0.1).start() for _ in range(ATTACKERS)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def victim(ca: JWKSAuthority) -> Iterator[JWKSServer]:
    with JWKSServer(ca, jwks=key("v1")) as server:
        yield server


def running(keys: IssuerKeys) -> Iterator[IssuerKeys]:
    halt = threading.Event()
    thread = threading.Thread(target=keys.run, args=(halt,), daemon=True)
    thread.start()
    yield keys
    halt.set()
    thread.join(timeout=5)


@pytest.fixture
def keys(ca: JWKSAuthority) -> Iterator[IssuerKeys]:
    policy = FetchPolicy(
        deadline=FETCH_DEADLINE,
        allowed_networks=(ipaddress.ip_network("127.0.0.2/32"),),
        ssl_context=client_context(ca),
    )
    issuer_keys = IssuerKeys(refresh_every=300, cooldown=0.5, policy=policy, workers=WORKERS)
    issuer_keys.set_cluster_source(lambda: ("https://cluster", key("cluster")))
    yield from running(issuer_keys)


def kids(keys: IssuerKeys, name: str) -> set[str]:
    jwks = keys.get(name)[1] or {"keys": []}
    return {k["kid"] for k in jwks["keys"]}


def test_a_victims_new_key_is_picked_up_while_attackers_hold_their_fetches(
    keys: IssuerKeys, victim: JWKSServer, attackers: list[JWKSServer]
) -> None:
    keys.track({victim.url, *(a.url for a in attackers)})
    # All 13 start at once on 4 slots: the victim waits at most 3 rounds of deadlines.
    eventually(lambda: kids(keys, uri_source(victim.url)) == {"v1"}, 4 * FETCH_DEADLINE + 2)
    eventually(lambda: keys.failures[DEADLINE] >= 2 * ATTACKERS, 4 * FETCH_DEADLINE + 2)
    victim.jwks = key("v2")  # the issuer rotates; a token names the new kid
    time.sleep(keys.cooldown)

    def picked_up() -> bool:
        keys.want_refresh(uri_source(victim.url))
        return kids(keys, uri_source(victim.url)) == {"v2"}

    # Attackers now fail and may hold only half the slots: at most one deadline of waiting.
    eventually(picked_up, FETCH_DEADLINE + 2)
    assert keys.states()["failing"] == 2 * ATTACKERS


def test_the_clusters_keys_do_not_wait_for_url_sources(
    keys: IssuerKeys, attackers: list[JWKSServer]
) -> None:
    keys.track(a.url for a in attackers)
    eventually(lambda: kids(keys, KUBERNETES) == {"cluster"}, 2)
    assert keys.get(KUBERNETES)[0] == "https://cluster"


def test_untracked_sources_are_dropped(keys: IssuerKeys, victim: JWKSServer) -> None:
    keys.track({victim.url})
    eventually(lambda: kids(keys, uri_source(victim.url)) == {"v1"}, 3)
    keys.track(set())
    eventually(lambda: keys.get(uri_source(victim.url)) == (None, None), 2)
    assert kids(keys, KUBERNETES) == {"cluster"}
