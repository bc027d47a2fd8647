"""`when` conditions: compile errors name the field; evaluation denies on error."""

from __future__ import annotations

from typing import Any

import pytest

from kubemint.policy.expressions import (
    ISSUER_VARIABLES,
    Condition,
    ExpressionError,
    compile_condition,
    install,
    nesting,
)

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
        ("x" * 1025, "longer than 1024"),
        (
            "request.scopes.all(a, request.scopes.all(b, request.scopes.all(c, a == c)))",
            "nested 3 deep; at most 2",
        ),
    ],
    ids=[
        "a syntax error",
        "an unknown variable",
        "an overlong expression",
        "comprehensions nested three deep",
    ],
)
def test_bad_conditions_fail_to_compile_naming_the_field(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=r"spec\.when") as caught:
        compile_condition(source)
    assert message in str(caught.value)


def test_a_rule_condition_sees_tenant_claims_apart_from_claims() -> None:
    condition = compile_condition("tenantClaims.repository == 'org/app'")
    assert condition.allows(REQUEST, {}, tenant_claims={"repository": "org/app"}) is True
    assert condition.allows(REQUEST, {"repository": "org/app"}, tenant_claims={}) is False


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


@pytest.mark.parametrize(
    ("source", "depth"),
    [
        ("request.grant_type == 'client_credentials'", 0),
        ("request.scopes.exists(s, s.startsWith('event.'))", 1),
        ("request.scopes.all(a, claims.groups.exists(g, g == a))", 2),
        ("request.scopes.map(a, request.scopes).all(x, x.all(y, y != ''))", 2),  # chained
        ("claims.note == 'l.all(x, m.all(y, z.all(w, true)))'", 0),  # inside a string
        ("size(request.scopes) > 0 && (request.scopes.all(s, (s != '')))", 1),
    ],
)
def test_nesting_counts_comprehensions_inside_comprehensions_only(source: str, depth: int) -> None:
    assert nesting(source) == depth
    compile_condition(source)  # all within the limit


def test_an_installed_evaluator_evaluates_every_condition_and_names_the_owner() -> None:
    seen: list[tuple[str, str]] = []

    class Recording:
        def evaluate(
            self, condition: Condition, request: Any, claims: Any, owner: str, tenant_claims: Any
        ) -> bool:
            seen.append((condition.source, owner))
            return True

    condition = compile_condition("request.grant_type == 'password'")
    previous = install(Recording())
    try:
        assert condition.allows(REQUEST, {}, owner="team")
    finally:
        install(previous)
    assert seen == [("request.grant_type == 'password'", "team")]
    assert not condition.allows(REQUEST, {}, owner="team")  # the in-process evaluator again
