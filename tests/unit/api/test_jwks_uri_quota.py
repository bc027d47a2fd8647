"""The per-namespace jwksUri quota (issue 10, finding 3): one decision, taken alike by the
operator (the account's status) and the token server (what it fetches)."""

from __future__ import annotations

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
