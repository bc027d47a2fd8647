"""An external issuer's `when` sees the JWT's claims and the token request, like an
AccessRule's `when`; one that does not compile accepts nothing."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest

from kubemint.crypto import keys
from kubemint.crypto.jwt import Signer
from kubemint.oauth.errors import InvalidGrant, TemporarilyUnavailable
from kubemint.oauth.federation import FederationContext, federated_account, request_context
from kubemint.policy import expressions
from kubemint.policy.expressions import EvaluationUnavailable
from kubemint.store.snapshot import Snapshot
from tests.unit.records import account_record, build

ISSUER = "https://kubemint.test"
CI = "https://ci.test"
CI_KEY = keys.generate("ES256")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class NoKeys:
    def get(self, name: str) -> tuple[str | None, Mapping[str, Any] | None]:
        return None, None

    def want_refresh(self, name: str) -> None:
        return None


def _snapshot(when: str, audiences: list[str] | None = None) -> Snapshot:
    client = {
        "metadata": {
            "namespace": "tasks",
            "name": "gw",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "audiences": audiences or ["https://api.test"],
            "authMethod": "none",
            "grantTypes": [JWT_BEARER],
        },
    }
    account = {
        "metadata": {"namespace": "tasks", "name": "ci"},
        "spec": {
            "clients": ["gw"],
            "federation": {"issuers": [{"issuer": CI, "jwksUri": CI + "/jwks", "when": when}]},
        },
    }
    verification = account_record("tasks", "ci", issuer_keys={CI: {"keys": [CI_KEY.public_jwk()]}})
    return build(
        server_namespace="kubemint-system",
        clients=[client],
        accounts=[account],
        rules=[],
        signing_keys=[],
        secrets=[verification],
    )


def _jwt() -> str:
    now = int(time.time())
    claims = {"iss": CI, "sub": "repo:org/app", "aud": ISSUER, "iat": now, "exp": now + 300}
    return Signer(CI_KEY).sign(claims, typ="JWT")


FORM = {
    "grant_type": JWT_BEARER,
    "client_id": "tasks.gw",
    "audience": "https://api.test",
    "scope": "write read",
}


def _federate(snapshot: Snapshot, request: Mapping[str, Any] | None) -> str:
    client = snapshot.clients["tasks.gw"]
    account, _ = federated_account(
        _jwt(),
        client,
        snapshot,
        FederationContext(NoKeys(), ISSUER, time.time()),
        InvalidGrant,
        request=request,
    )
    return account.subject


def test_the_request_context_has_the_fields_an_access_rule_condition_sees() -> None:
    client = _snapshot("true").clients["tasks.gw"]
    assert request_context(FORM, "10.0.0.7", client) == {
        "grant_type": JWT_BEARER,
        "client_id": "tasks.gw",
        "audience": "https://api.test",
        "scopes": ["read", "write"],
        "source": "10.0.0.7",
    }


@pytest.mark.parametrize(
    ("form", "audiences", "audience"),
    [
        ({}, ["https://only.test"], "https://only.test"),
        ({"resource": "https://b.test"}, ["https://a.test", "https://b.test"], "https://b.test"),
        ({}, ["https://a.test", "https://b.test"], None),
        (
            {"audience": "https://a.test", "resource": "https://b.test"},
            ["https://a.test", "https://b.test"],
            None,
        ),
    ],
    ids=["the only audience", "resource names it", "ambiguous", "two named"],
)
def test_the_request_context_audience(
    form: dict[str, str], audiences: list[str], audience: str | None
) -> None:
    client = _snapshot("true", audiences).clients["tasks.gw"]
    assert request_context(form, "", client)["audience"] == audience


CONDITION = (
    "request.grant_type == 'urn:ietf:params:oauth:grant-type:jwt-bearer'"
    " && request.client_id == 'tasks.gw' && request.audience == 'https://api.test'"
    " && request.scopes == ['read', 'write'] && request.source == '10.0.0.7'"
    " && request.subject == 'kubemint:serviceaccount:tasks:ci'"
    " && claims.sub == 'repo:org/app'"
)


def test_an_issuer_condition_sees_the_token_request() -> None:
    snapshot = _snapshot(CONDITION)
    request = request_context(FORM, "10.0.0.7", snapshot.clients["tasks.gw"])
    assert _federate(snapshot, request) == "kubemint:serviceaccount:tasks:ci"


def test_an_issuer_condition_on_the_request_refuses_a_request_that_does_not_fit() -> None:
    snapshot = _snapshot(CONDITION)
    request = request_context(FORM, "10.9.9.9", snapshot.clients["tasks.gw"])
    with pytest.raises(InvalidGrant, match="not federated with this client"):
        _federate(snapshot, request)


def test_without_the_request_only_its_subject_is_known() -> None:
    snapshot = _snapshot("request.subject == 'kubemint:serviceaccount:tasks:ci'")
    assert _federate(snapshot, None) == "kubemint:serviceaccount:tasks:ci"
    with pytest.raises(InvalidGrant):
        _federate(_snapshot(CONDITION), None)


def test_an_issuer_condition_that_does_not_compile_accepts_nothing() -> None:
    snapshot = _snapshot("claims.sub == ")
    request = request_context(FORM, "10.0.0.7", snapshot.clients["tasks.gw"])
    with pytest.raises(InvalidGrant, match="not federated with this client"):
        _federate(snapshot, request)


def test_an_issuer_condition_over_budget_is_temporarily_unavailable_not_a_denial() -> None:
    """Not "try the next issuer": the answer is unknown, so the request is retryable."""

    class OverBudget:
        def evaluate(self, condition: Any, request: Any, claims: Any, owner: str) -> bool:
            assert owner == "tasks"  # the account's namespace
            raise EvaluationUnavailable("timeout")

    previous = expressions.install(OverBudget())
    try:
        with pytest.raises(TemporarilyUnavailable, match="issuer condition"):
            _federate(
                _snapshot("claims.sub == 'repo:org/app'"),
                request_context(FORM, "", _snapshot("true").clients["tasks.gw"]),
            )
    finally:
        expressions.install(previous)
