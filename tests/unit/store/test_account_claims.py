"""The token server's view skips an account whose spec.claims no account may set (an older
CRD admitted it; the operator reports ForbiddenClaims), and reads AccessRules' accountClaims."""

from __future__ import annotations

from typing import Any

import pytest

from kubemint.api.meta import ObjectRef
from kubemint.store.snapshot import Snapshot, build_snapshot


def _account(claims: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "tasks", "name": "bot"},
        "spec": {"clients": ["gw"], "appPasswords": {"secretName": "p"}, "claims": claims},
    }


def _view(accounts: list[dict[str, Any]], rules: list[dict[str, Any]] = []) -> Snapshot:  # noqa: B006
    return build_snapshot(
        server_namespace="s",
        clients=[],
        accounts=accounts,
        rules=rules,
        signing_keys=[],
        secrets=[],
    )


def test_an_account_with_plain_claims_is_in_the_view() -> None:
    view = _view([_account({"team": "tasks"})])
    assert view.accounts[("tasks", "bot")].claims == {"team": "tasks"}


@pytest.mark.parametrize(
    "claims",
    [{"scp": "admin"}, {"roles": ["admin"]}, {"Groups": ["x"]}, {"https://x.test/roles": "a"}],
    ids=["scp", "roles", "another letter case", "a URI name"],
)
def test_an_account_with_a_forbidden_claim_is_skipped(claims: dict[str, Any]) -> None:
    view = _view([_account({"team": "tasks", **claims})])
    assert ("tasks", "bot") not in view.accounts
    assert ("tasks", "gw") not in view.accounts_by_client


def test_access_rules_carry_their_account_claims() -> None:
    rule = {
        "metadata": {
            "namespace": "calendar",
            "name": "r",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "audience": "https://calendar.test",
            "subjects": [{"kind": "ServiceAccount", "namespace": "tasks", "name": "bot"}],
            "accountClaims": ["team"],
        },
    }
    (view,) = _view([], [rule]).rules["https://calendar.test"]
    assert view.ref == ObjectRef("AccessRule", "calendar", "r")
    assert view.account_claims == {"team"}
