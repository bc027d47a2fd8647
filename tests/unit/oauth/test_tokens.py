"""kubemint.oauth.policy and kubemint.oauth.tokens: what a token says about scopes and claims.

Every token carries `scope` (empty for an audience-only token), because a resource server
that finds none may read authority elsewhere (Spring Security falls back to `scp`); and an
account's own claims reach another namespace's API only as far as its owner allows.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubemint.api.meta import ObjectRef
from kubemint.oauth.client_auth import Caller
from kubemint.oauth.errors import InvalidScope
from kubemint.oauth.policy import Grant, decide, requested_scopes
from kubemint.oauth.tokens import access_token_claims
from kubemint.store.snapshot import AccountView, ClientView, RuleView, Snapshot

AUDIENCE = "https://calendar.test"
CLIENT = ClientView.make(
    ref=ObjectRef("OAuth2Client", "tasks", "gw"),
    client_id="tasks.gw",
    disabled=False,
    grant_types=frozenset({"password"}),
    auth_method="none",
    scopes=frozenset({"event.view", "event.create"}),
    audiences=(AUDIENCE,),
    token_lifetime=600,
    token_format="jwt",
    signing_key="default",
    encryption_key=None,
)
ACCOUNT = AccountView(
    ref=ObjectRef("ServiceAccount", "tasks", "bot"),
    subject="kubemint:serviceaccount:tasks:bot",
    disabled=False,
    clients=frozenset({"gw"}),
    passwords=(),
    kubernetes=frozenset(),
    issuers=(),
    issuer_keys={},
    claims={"team": "tasks", "tier": "batch", "scp": "admin", "Roles": ["admin"]},
)
BOT = Caller(CLIENT, "app_password", account=ACCOUNT)


def _rule(namespace: str, scopes: set[str], **fields: Any) -> RuleView:
    return RuleView(
        ref=ObjectRef("AccessRule", namespace, "r"),
        audience=AUDIENCE,
        subjects=frozenset({ACCOUNT.ref, CLIENT.ref}),
        scopes=frozenset(scopes),
        condition=None,
        http=(),
        **fields,
    )


def _decide(
    caller: Caller, *rules: RuleView, scopes: set[str] | None = None
) -> tuple[Grant, dict[str, Any]]:
    grant = decide(caller, Snapshot(rules={AUDIENCE: rules}), AUDIENCE, scopes, dict)
    return grant, access_token_claims(caller, grant, "https://kubemint.test", 1_000)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, None), ("", None), ("a b", {"a", "b"}), (" a  a ", {"a"})],
    ids=[
        "no scope parameter",
        "scope sent without a value is omitted (RFC 6749 §3.2)",
        "space-separated scopes",
        "extra spaces and repeats",
    ],
)
def test_requested_scopes(raw: str | None, expected: set[str] | None) -> None:
    assert requested_scopes(raw) == expected


def test_a_scope_of_only_spaces_is_malformed() -> None:
    with pytest.raises(InvalidScope, match="malformed scope"):
        requested_scopes("   ")


def test_an_empty_scope_parameter_gets_the_default_and_a_scope_claim() -> None:
    """The finding: `scope=` gave a token without `scope`. Now it is the omitted parameter."""
    grant, claims = _decide(BOT, _rule("calendar", {"event.view"}), scopes=requested_scopes(""))
    assert grant.scopes == ("event.view",)
    assert claims["scope"] == "event.view"


@pytest.mark.parametrize(
    "caller", [BOT, Caller(CLIENT, "client_secret_basic")], ids=["account", "client"]
)
def test_an_audience_only_token_carries_an_empty_scope(caller: Caller) -> None:
    grant, claims = _decide(caller, _rule("calendar", set()))
    assert grant.scopes == ()
    assert claims["scope"] == ""


def test_an_account_keeps_its_claims_in_tokens_for_its_own_namespace() -> None:
    _, claims = _decide(BOT, _rule("tasks", {"event.view"}))
    assert claims["team"] == "tasks"
    assert claims["tier"] == "batch"


def test_another_namespace_gets_no_account_claims_unless_its_rules_list_them() -> None:
    _, claims = _decide(BOT, _rule("calendar", {"event.view"}))
    assert "team" not in claims
    assert "tier" not in claims


def test_the_matching_rules_together_allow_account_claims() -> None:
    rules = (
        _rule("calendar", {"event.view"}, account_claims=frozenset({"team"})),
        _rule("calendar", set(), account_claims=frozenset({"tier", "scp"})),
    )
    grant, claims = _decide(BOT, *rules)
    assert grant.account_claims == {"team", "tier", "scp"}
    assert claims["team"] == "tasks"
    assert claims["tier"] == "batch"


@pytest.mark.parametrize(
    "allowed", [None, frozenset({"scp", "Roles"})], ids=["own namespace", "allow-listed"]
)
def test_forbidden_claims_are_never_issued(allowed: frozenset[str] | None) -> None:
    """Whatever an older CRD admitted and whatever an owner lists: `scp` injected by an
    account would be read as scopes when `scope` is missing, `Roles` as roles."""
    claims = access_token_claims(BOT, Grant(AUDIENCE, (), allowed), "https://kubemint.test", 1)
    assert "scp" not in claims
    assert "Roles" not in claims
    assert claims["scope"] == ""
    assert claims["sub"] == "kubemint:serviceaccount:tasks:bot"
