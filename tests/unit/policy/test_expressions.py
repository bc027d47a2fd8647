"""`when` conditions: compile errors name the field; evaluation denies on error."""

from __future__ import annotations

import pytest

from kubemint.policy.expressions import ISSUER_VARIABLES, ExpressionError, compile_condition

REQUEST = {"grant_type": "client_credentials", "scopes": ["event.view"], "audience": "a"}


@pytest.mark.parametrize(
    ("source", "claims", "allowed"),
    [
        ("claims.iss == 'https://ci.example'", {"iss": "https://ci.example"}, True),
        ("claims.iss == 'https://ci.example'", {"iss": "https://evil.example"}, False),
        ("request.scopes.all(s, s.startsWith('event.'))", {}, True),
        ("request.scopes.exists(s, s == 'event.delete')", {}, False),
        ("claims.repository == 'org/app'", {}, False),  # missing claim: an error, so deny
        ("'yes'", {}, False),  # only boolean true allows
    ],
    ids=[
        "a matching issuer allows",
        "another issuer denies",
        "macros bind their own variables",
        "a scope that is not requested denies",
        "a missing claim denies",
        "a non-boolean result denies",
    ],
)
def test_conditions_evaluate_over_request_and_claims(
    source: str, claims: dict[str, str], allowed: bool
) -> None:
    assert compile_condition(source).allows(REQUEST, claims) is allowed


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("claims.iss ==", "spec.when: "),
        ("claim.iss == 'a'", "unknown variable claim"),
        ("x" * 5000, "longer than 4096"),
    ],
    ids=["a syntax error", "an unknown variable", "an overlong expression"],
)
def test_bad_conditions_fail_to_compile_naming_the_field(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=r"spec\.when") as caught:
        compile_condition(source)
    assert message in str(caught.value)


def test_a_rule_condition_sees_tenant_claims_apart_from_claims() -> None:
    condition = compile_condition("tenantClaims.repository == 'org/app'")
    assert condition.allows(REQUEST, {}, {"repository": "org/app"}) is True
    assert condition.allows(REQUEST, {"repository": "org/app"}, {}) is False


def test_an_issuer_condition_has_no_tenant_claims() -> None:
    """In a ServiceAccount's own issuer condition the issuer's claims are `claims`."""
    with pytest.raises(ExpressionError) as caught:
        compile_condition(
            "tenantClaims.ref == 'main'", "spec.federation.issuers[0].when", ISSUER_VARIABLES
        )
    assert str(caught.value) == (
        "spec.federation.issuers[0].when: unknown variable tenantClaims; use request and claims"
    )
    with pytest.raises(ExpressionError, match="use request, claims and tenantClaims"):
        compile_condition("claim.iss == 'a'")
