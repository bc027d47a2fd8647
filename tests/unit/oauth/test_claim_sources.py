"""What an AccessRule's `when` sees of the presented claims: `claims` only from sources the
cluster trusts, the tenant's own word under `tenantClaims`, and `request.issuerSource` saying
which (kubemint.oauth.claim_sources, applied by kubemint.oauth.policy.decide)."""

from __future__ import annotations

from typing import Any

import pytest

from kubemint.oauth import claim_sources
from kubemint.oauth.claim_sources import when_inputs
from kubemint.oauth.client_auth import Caller
from kubemint.oauth.errors import AccessDenied
from kubemint.oauth.policy import decide
from kubemint.store.snapshot import Snapshot, build_snapshot

PRESENTED = {"iss": "https://token.actions.githubusercontent.com", "repository": "victim/repo"}
REQUEST = {"grant_type": "client_credentials", "client_id": "ci.gw"}


@pytest.mark.parametrize(
    ("source", "in_claims", "in_tenant_claims"),
    [
        (claim_sources.CLUSTER, True, False),
        (claim_sources.KUBERNETES, True, False),
        (claim_sources.TENANT, False, True),
        (claim_sources.CLIENT, False, True),
        (claim_sources.NONE, False, False),
        ("something-new", False, False),
    ],
    ids=[
        "a TrustedIssuer's claims are claims",
        "a projected token's claims are claims",
        "a tenant-declared issuer's claims are only tenantClaims",
        "a client's own assertion claims are only tenantClaims",
        "no JWT gives neither",
        "an unknown source is trusted by nobody",
    ],
)
def test_the_presented_claims_go_where_their_source_earns_them(
    source: str, in_claims: bool, in_tenant_claims: bool
) -> None:
    inputs = when_inputs(source, PRESENTED, REQUEST)
    assert inputs.claims == (PRESENTED if in_claims else {})
    assert inputs.tenant_claims == (PRESENTED if in_tenant_claims else {})
    assert inputs.request == {**REQUEST, "issuerSource": source}


def test_the_request_cannot_bring_its_own_issuer_source() -> None:
    inputs = when_inputs(claim_sources.TENANT, PRESENTED, {**REQUEST, "issuerSource": "cluster"})
    assert inputs.request["issuerSource"] == claim_sources.TENANT


def test_the_inputs_are_copies() -> None:
    presented = dict(PRESENTED)
    inputs = when_inputs(claim_sources.CLUSTER, presented, REQUEST)
    inputs.claims["repository"] = "other/repo"
    assert presented["repository"] == "victim/repo"


AUDIENCE = "https://api.test"


def _snapshot(when: str) -> Snapshot:
    client = {
        "metadata": {"namespace": "ci", "name": "gw", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"audiences": [AUDIENCE], "scopes": ["deploy"], "authMethod": "private_key_jwt"},
    }
    rule = {
        "metadata": {"namespace": "api", "name": "r", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "audience": AUDIENCE,
            "scopes": ["deploy"],
            "subjects": [{"kind": "OAuth2Client", "namespace": "ci", "name": "gw"}],
            "when": when,
        },
    }
    return build_snapshot(
        server_namespace="kubemint-system",
        clients=[client],
        accounts=[],
        rules=[rule],
        signing_keys=[],
        secrets=[],
    )


def _granted(when: str, source: str, claims: dict[str, Any]) -> bool:
    snapshot = _snapshot(when)
    caller = Caller(snapshot.clients["ci.gw"], "x", claims=claims, claims_source=source)
    try:
        decide(caller, snapshot, AUDIENCE, None, lambda: dict(REQUEST))
    except AccessDenied:
        return False
    return True


CLAIMS_RULE = "claims.repository == 'victim/repo'"
TENANT_RULE = "request.issuerSource == 'tenant' && tenantClaims.repository == 'victim/repo'"


@pytest.mark.parametrize(
    ("when", "source", "granted"),
    [
        (CLAIMS_RULE, claim_sources.CLUSTER, True),
        (CLAIMS_RULE, claim_sources.KUBERNETES, True),
        (CLAIMS_RULE, claim_sources.TENANT, False),
        (CLAIMS_RULE, claim_sources.CLIENT, False),
        ("!has(claims.repository)", claim_sources.TENANT, True),
        (TENANT_RULE, claim_sources.TENANT, True),
        (TENANT_RULE, claim_sources.CLIENT, False),
        (TENANT_RULE, claim_sources.CLUSTER, False),
    ],
    ids=[
        "a rule over claims grants on a TrustedIssuer's claims",
        "a rule over claims grants on a projected token's claims",
        "a rule over claims refuses the same claims from a tenant's own issuer",
        "a rule over claims refuses the same claims in a client's own assertion",
        "claims stay empty for a tenant's issuer (a negative condition holds)",
        "an owner who accepts the tenant's word says so with tenantClaims",
        "tenantClaims of a client assertion are told apart by issuerSource",
        "a TrustedIssuer's claims are not tenantClaims",
    ],
)
def test_decide_evaluates_when_over_the_claims_their_source_earns(
    when: str, source: str, granted: bool
) -> None:
    assert _granted(when, source, dict(PRESENTED)) is granted
