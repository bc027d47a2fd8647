"""An external issuer's `when` sees the JWT's claims and the token request, like an
AccessRule's `when`; one that does not compile accepts nothing. A TrustedIssuer and a
tenant-declared issuer may share an `iss`: the keys that verify decide who vouches."""

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
    found = federated_account(
        _jwt(),
        client,
        snapshot,
        FederationContext(NoKeys(), ISSUER, time.time()),
        InvalidGrant,
        request=request,
    )
    return found.account.subject


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


# --- TrustedIssuers and tenant-declared issuers with the same `iss` -----------------------

GITHUB = "https://token.actions.githubusercontent.com"
GITHUB_KEY = keys.generate("ES256")  # the test plays GitHub (and the admin trusting it)
TENANT_KEY = keys.generate("ES256")  # the tenant's own keys for "GitHub"


def _trusting_snapshot(
    trusted_namespace: str = "kubemint-system", ref: dict[str, Any] | None = None
) -> Snapshot:
    """Account tasks/ci names TrustedIssuer `github` and declares GitHub's URL itself too."""
    account = {
        "metadata": {"namespace": "tasks", "name": "ci"},
        "spec": {
            "clients": ["gw"],
            "federation": {
                "trustedIssuers": [ref or {"name": "github"}],
                "issuers": [{"issuer": GITHUB, "jwksSecretRef": {"name": "mine"}}],
            },
        },
    }
    verification = account_record(
        "tasks", "ci", issuer_keys={GITHUB: {"keys": [TENANT_KEY.public_jwk()]}}
    )
    trusted = {
        "metadata": {"namespace": trusted_namespace, "name": "github"},
        "spec": {"issuer": GITHUB, "jwks": {"keys": [GITHUB_KEY.public_jwk()]}},
    }
    return build(
        server_namespace="kubemint-system",
        clients=[
            {
                "metadata": {
                    "namespace": "tasks",
                    "name": "gw",
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                },
                "spec": {"audiences": ["https://api.test"], "authMethod": "none"},
            }
        ],
        accounts=[account],
        rules=[],
        signing_keys=[],
        secrets=[verification],
        trusted_issuers=[trusted],
    )


def _github_jwt(key: keys.KeyMaterial, sub: str = "repo:victim/repo") -> str:
    now = int(time.time())
    claims = {"iss": GITHUB, "sub": sub, "aud": ISSUER, "iat": now, "exp": now + 300}
    return Signer(key).sign(claims, typ="JWT")


def _found(snapshot: Snapshot, token: str) -> tuple[str, str]:
    found = federated_account(
        token,
        snapshot.clients["tasks.gw"],
        snapshot,
        FederationContext(NoKeys(), ISSUER, time.time()),
        InvalidGrant,
    )
    return found.account.subject, found.source


def test_a_jwt_that_verifies_with_a_trusted_issuer_s_keys_is_vouched_for_by_the_cluster() -> None:
    assert _found(_trusting_snapshot(), _github_jwt(GITHUB_KEY)) == (
        "kubemint:serviceaccount:tasks:ci",
        "cluster",
    )


def test_the_same_iss_signed_with_the_tenant_s_own_keys_is_only_the_tenant_s_word() -> None:
    assert _found(_trusting_snapshot(), _github_jwt(TENANT_KEY))[1] == "tenant"


def test_a_trusted_issuer_outside_the_server_namespace_is_ignored() -> None:
    snapshot = _trusting_snapshot(trusted_namespace="tasks")
    assert snapshot.trusted_issuers == {}
    with pytest.raises(InvalidGrant, match="assertion rejected"):
        _found(snapshot, _github_jwt(GITHUB_KEY))
    assert _found(snapshot, _github_jwt(TENANT_KEY))[1] == "tenant"


def test_a_trusted_reference_s_subject_binds_its_jwts() -> None:
    snapshot = _trusting_snapshot(ref={"name": "github", "subject": "repo:tasks/app"})
    assert _found(snapshot, _github_jwt(GITHUB_KEY, sub="repo:tasks/app"))[1] == "cluster"
    with pytest.raises(InvalidGrant):
        _found(snapshot, _github_jwt(GITHUB_KEY, sub="repo:victim/repo"))


def test_an_issuer_condition_sees_who_vouches_for_the_jwt() -> None:
    ref = {"name": "github", "when": "request.issuerSource == 'cluster'"}
    snapshot = _trusting_snapshot(ref=ref)
    assert _found(snapshot, _github_jwt(GITHUB_KEY))[1] == "cluster"


def test_the_token_server_fetches_the_keys_of_trusted_issuers_with_a_jwks_uri() -> None:
    fetched = build(
        server_namespace="kubemint-system",
        clients=[],
        accounts=[],
        rules=[],
        signing_keys=[],
        secrets=[],
        trusted_issuers=[
            {
                "metadata": {"namespace": namespace, "name": "github"},
                "spec": {"issuer": GITHUB, "jwksUri": f"{GITHUB}/{namespace}/jwks"},
            }
            for namespace in ("kubemint-system", "tasks")
        ],
    ).jwks_uris()
    assert fetched == {f"{GITHUB}/kubemint-system/jwks"}  # never a tenant's TrustedIssuer's


def test_an_issuer_condition_over_budget_is_temporarily_unavailable_not_a_denial() -> None:
    """Not "try the next issuer": the answer is unknown, so the request is retryable."""

    class OverBudget:
        def evaluate(
            self, condition: Any, request: Any, claims: Any, owner: str, tenant_claims: Any
        ) -> bool:
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
