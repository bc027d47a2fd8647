"""What the operator says about jwksUris (issue 10, finding 3): the per-namespace quota (one
decision, taken alike by the operator for the account's status and by the token server for
what it fetches), and URIs naming an address inside the cluster."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from kubemint.api.serviceaccount import AccountSpec, admitted_jwks_uris
from kubemint.reconcile.serviceaccounts import AccountContext, check_account
from kubemint.store.snapshot import build_snapshot

T1, T2, T3 = "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z", "2026-01-01T00:00:03Z"


@pytest.mark.parametrize(
    ("accounts", "limit", "admitted"),
    [
        pytest.param([(T1, "a", ["u1", "u2"])], 2, {"u1", "u2"}, id="within the limit all count"),
        pytest.param(
            [(T2, "new", ["u3"]), (T1, "old", ["u1", "u2"])],
            2,
            {"u1", "u2"},
            id="older accounts come first",
        ),
        pytest.param([(T1, "b", ["u2"]), (T1, "a", ["u1"])], 1, {"u1"}, id="same second: by name"),
        pytest.param(
            [(T1, "a", ["u1", "u1", None]), (T2, "b", ["u1", "u2"])],
            2,
            {"u1", "u2"},
            id="a URI already admitted costs nothing more",
        ),
        pytest.param([(T1, "a", ["u1"])], 0, set(), id="a limit of zero admits none"),
    ],
)
def test_which_uris_are_admitted(
    accounts: list[tuple[str, str, list[str | None]]], limit: int, admitted: set[str]
) -> None:
    assert admitted_jwks_uris(accounts, limit) == admitted


def _account(namespace: str, name: str, created: str, *uris: str) -> dict[str, Any]:
    issuers = [{"issuer": f"https://{name}.{i}", "jwksUri": u} for i, u in enumerate(uris)]
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"{namespace}-{name}",
            "creationTimestamp": created,
        },
        "spec": {"clients": ["gw"], "federation": {"issuers": issuers}},
    }


def test_the_token_server_fetches_each_namespaces_quota_only() -> None:
    snapshot = build_snapshot(
        server_namespace="kubemint",
        clients=[],
        accounts=[
            _account("evil", "spam", T1, *(f"https://evil/{i}" for i in range(10))),
            _account("victim", "ci", T3, "https://victim/jwks"),
        ],
        rules=[],
        signing_keys=[],
        secrets=[],
    )
    uris = snapshot.jwks_uris(per_namespace=3)
    assert uris == {"https://evil/0", "https://evil/1", "https://evil/2", "https://victim/jwks"}


def test_an_account_over_the_quota_is_told_which_field() -> None:
    older = (T1, "old", ("https://a", "https://b"))
    body = _account("team", "new", T2, "https://a", "https://c")
    spec = AccountSpec.from_body(body)
    context = AccountContext(
        {"gw": ("client_credentials",)},
        frozenset(),
        {},
        admitted_jwks_uris=admitted_jwks_uris([older, (T2, "new", ("https://a", "https://c"))], 2),
        jwks_uris_per_namespace=2,
    )
    outcome = check_account(spec, context)
    assert outcome.reason == "TooManyJwksUris"
    assert outcome.message.startswith("spec.federation.issuers[1].jwksUri: namespace team")


@pytest.mark.parametrize(
    ("uri", "allowed", "reason"),
    [
        pytest.param("https://169.254.169.254/latest/", (), "JwksUriRefused", id="metadata"),
        pytest.param("https://[::1]:8443/jwks", (), "JwksUriRefused", id="IPv6 loopback"),
        pytest.param("https://10.96.0.10/jwks", (), "JwksUriRefused", id="a service IP"),
        pytest.param(
            "https://10.96.0.10/jwks", ("10.96.0.10/32",), "Reconciled", id="an allowed service IP"
        ),
        pytest.param("https://idp.example.com/jwks", (), "Reconciled", id="a name is fetched"),
    ],
)
def test_an_internal_address_is_named_on_the_account(
    uri: str, allowed: tuple[str, ...], reason: str
) -> None:
    spec = AccountSpec.from_body(_account("team", "ci", T1, uri))
    context = AccountContext(
        {"gw": ("client_credentials",)},
        frozenset(),
        {},
        cluster_networks=(ipaddress.ip_network("10.96.0.0/12"),),
        allowed_networks=tuple(ipaddress.ip_network(a) for a in allowed),
    )
    outcome = check_account(spec, context)
    assert outcome.reason == reason
    if reason == "JwksUriRefused":
        assert outcome.message.startswith("spec.federation.issuers[0].jwksUri: ")
