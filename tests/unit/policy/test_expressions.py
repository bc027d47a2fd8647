"""AccessRule `when` conditions: compile errors name the field; evaluation denies on error."""

from __future__ import annotations

import pytest

from kubemint.policy.expressions import ExpressionError, compile_condition

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
