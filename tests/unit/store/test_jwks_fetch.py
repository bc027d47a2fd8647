"""A jwksUri fetch is bounded in time and size and never reaches internal addresses (issue 10,
finding 3): real TLS servers on loopback behaving badly, against the real fetcher."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubemint.store import jwks_fetch
from kubemint.store.jwks_fetch import FetchError, FetchPolicy, fetch_jwks, literal_refusal, refusal
from tests.jwks_servers import SECRET_BODY, JWKSAuthority, JWKSServer, client_context, make_ca

DEADLINE = 1.0
SLACK = 1.0  # scheduling on a busy 2-core machine; the old code took 10 s or forever
JWKS = {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "kid": "k1"}]}
LOOPBACK_2 = (ipaddress.ip_network("127.0.0.2/32"),)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> JWKSAuthority:
    return make_ca(Path(tmp_path_factory.mktemp("jwks-ca")))


@pytest.fixture
def policy(ca: JWKSAuthority) -> FetchPolicy:
    """What tests run with: 127.0.0.2 allow-listed (as an admin would an in-cluster IdP)."""
    return FetchPolicy(
        deadline=DEADLINE, allowed_networks=LOOPBACK_2, ssl_context=client_context(ca)
    )


@pytest.fixture
def server(ca: JWKSAuthority) -> Iterator[JWKSServer]:
    with JWKSServer(ca, jwks=JWKS) as running:
        yield running


def fetch(uri: str, policy: FetchPolicy) -> tuple[dict | FetchError, float]:
    started = time.monotonic()
    try:
        result: dict | FetchError = asyncio.run(fetch_jwks(uri, policy))
    except FetchError as exc:
        result = exc
    return result, time.monotonic() - started


def failure(uri: str, policy: FetchPolicy) -> FetchError:
    result, _ = fetch(uri, policy)
    assert isinstance(result, FetchError), result
    return result


def test_an_allowed_server_is_fetched(server: JWKSServer, policy: FetchPolicy) -> None:
    assert fetch(server.url, policy)[0] == JWKS


def test_by_default_loopback_is_refused_before_connecting(
    server: JWKSServer, ca: JWKSAuthority
) -> None:
    error = failure(server.url, FetchPolicy(ssl_context=client_context(ca)))
    assert error.reason == jwks_fetch.ADDRESS
    assert "127.0.0.2 is a loopback address" in str(error)
    assert server.requests == 0


def test_a_name_is_checked_by_what_it_resolves_to(ca: JWKSAuthority) -> None:
    with JWKSServer(ca, host="127.0.0.1", jwks=JWKS) as local:
        error = failure(
            f"https://localhost:{local.port}/jwks", FetchPolicy(ssl_context=client_context(ca))
        )
        assert error.reason == jwks_fetch.ADDRESS
        assert "loopback" in str(error)
        assert local.requests == 0


def test_the_metadata_address_is_refused() -> None:
    error = failure("https://169.254.169.254/latest/meta-data/", FetchPolicy(deadline=DEADLINE))
    assert error.reason == jwks_fetch.ADDRESS
    assert "link-local" in str(error)


def test_a_silent_server_costs_one_deadline(ca: JWKSAuthority, policy: FetchPolicy) -> None:
    with JWKSServer(ca, behaviour="silent") as silent:
        result, took = fetch(silent.url, policy)
    assert isinstance(result, FetchError)
    assert result.reason == jwks_fetch.DEADLINE
    assert took < DEADLINE + SLACK


def test_a_server_that_drips_bytes_costs_one_deadline(
    ca: JWKSAuthority, policy: FetchPolicy
) -> None:
    with JWKSServer(ca, behaviour="drip", drip_every=0.05) as drip:
        result, took = fetch(drip.url, policy)
    assert isinstance(result, FetchError)
    assert result.reason == jwks_fetch.DEADLINE
    assert took < DEADLINE + SLACK


def test_a_redirect_to_another_host_is_refused(ca: JWKSAuthority, policy: FetchPolicy) -> None:
    with (
        JWKSServer(ca, host="127.0.0.1", jwks=JWKS) as inside,
        JWKSServer(ca, behaviour="redirect", location=f"https://127.0.0.1:{inside.port}/") as hop,
    ):
        error = failure(hop.url, policy)
        assert error.reason == jwks_fetch.REDIRECT
        assert inside.requests == 0


def test_a_redirect_to_plain_http_is_refused(ca: JWKSAuthority, policy: FetchPolicy) -> None:
    with JWKSServer(ca, behaviour="redirect") as hop:
        hop.location = f"http://127.0.0.2:{hop.port}/jwks"
        assert failure(hop.url, policy).reason == jwks_fetch.REDIRECT


def test_redirects_on_the_same_host_are_followed_a_few_times(
    ca: JWKSAuthority, policy: FetchPolicy
) -> None:
    with JWKSServer(ca, behaviour="redirect", location="/again") as loop:
        error = failure(loop.url, policy)
        assert error.reason == jwks_fetch.REDIRECT
        assert loop.requests == policy.max_redirects + 1


def test_a_same_host_redirect_reaches_the_keys(ca: JWKSAuthority, policy: FetchPolicy) -> None:
    with JWKSServer(ca, jwks=JWKS) as keys, JWKSServer(ca, behaviour="redirect") as hop:
        # Same host, other port: that is another origin, so refused too.
        hop.location = keys.url
        assert failure(hop.url, policy).reason == jwks_fetch.REDIRECT


def test_a_large_body_is_cut_off(ca: JWKSAuthority, policy: FetchPolicy) -> None:
    with JWKSServer(ca, behaviour="huge", size=4 * policy.max_bytes) as huge:
        assert failure(huge.url, policy).reason == jwks_fetch.TOO_LARGE


def test_an_error_says_the_status_and_never_the_body(
    ca: JWKSAuthority, policy: FetchPolicy
) -> None:
    with JWKSServer(ca, behaviour="error") as broken:
        error = failure(broken.url, policy)
    assert error.reason == jwks_fetch.STATUS
    assert "HTTP 500" in str(error)
    assert SECRET_BODY not in str(error)


def test_only_https_urls_are_fetched(policy: FetchPolicy) -> None:
    assert failure("http://127.0.0.2/jwks", policy).reason == jwks_fetch.INVALID
    assert failure("https://user:pw@127.0.0.2/jwks", policy).reason == jwks_fetch.INVALID


CLUSTER = FetchPolicy(cluster_networks=(ipaddress.ip_network("10.96.0.0/12"),))


@pytest.mark.parametrize(
    ("address", "policy", "refused"),
    [
        pytest.param("127.0.0.1", FetchPolicy(), True, id="loopback is refused"),
        pytest.param("::1", FetchPolicy(), True, id="IPv6 loopback is refused"),
        pytest.param("::ffff:127.0.0.1", FetchPolicy(), True, id="IPv4-mapped loopback is refused"),
        pytest.param("169.254.169.254", FetchPolicy(), True, id="the metadata service is refused"),
        pytest.param("fe80::1", FetchPolicy(), True, id="IPv6 link-local is refused"),
        pytest.param(
            "0.0.0.0",  # noqa: S104 — an address to judge, not to bind
            FetchPolicy(),
            True,
            id="the unspecified address is refused",
        ),
        pytest.param("::", FetchPolicy(), True, id="the IPv6 unspecified address is refused"),
        pytest.param("224.0.0.1", FetchPolicy(), True, id="multicast is refused"),
        pytest.param("10.96.0.1", CLUSTER, True, id="a service address is refused"),
        pytest.param("10.0.0.1", CLUSTER, False, id="other private addresses are not"),
        pytest.param("93.184.215.14", CLUSTER, False, id="a public address is fetched"),
        pytest.param(
            "127.0.0.2",
            FetchPolicy(allowed_networks=LOOPBACK_2),
            False,
            id="an allow-listed network is fetched",
        ),
    ],
)
def test_which_addresses_are_refused(address: str, policy: FetchPolicy, refused: bool) -> None:
    assert (refusal(ipaddress.ip_address(address), policy) is not None) is refused


def test_literal_addresses_can_be_judged_without_a_fetch() -> None:
    assert literal_refusal("https://169.254.169.254/x", FetchPolicy()) == (
        "169.254.169.254 is a link-local address (metadata services live there)"
    )
    assert literal_refusal("https://idp.example.com/jwks", FetchPolicy()) is None
