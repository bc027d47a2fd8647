"""AccessRule status (kubemint.reconcile.accessrules): why a rule grants nothing, told
without naming or telling apart other namespaces, and subjects looked up only at home."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kubemint.api.accessrule import RuleClaim, RuleSpec
from kubemint.api.audiences import (
    ASSIGNED,
    SOURCE_ASSIGNED,
    SOURCE_CLAIMED,
    AudienceOwnership,
    InvalidRecord,
    OwnerRecord,
    decide,
)
from kubemint.api.meta import ObjectRef
from kubemint.reconcile.accessrules import (
    audience_owner_status,
    check_rule,
    subjects_outcome,
    unresolved_subjects,
)

Own = AudienceOwnership
A = "https://calendar.test"
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
BROKEN = InvalidRecord(A, "data.namespace is not a namespace name")


def claimed(namespace: str) -> OwnerRecord:
    return OwnerRecord(A, namespace, SOURCE_CLAIMED)


def assigned(namespace: str) -> OwnerRecord:
    return OwnerRecord(A, namespace, SOURCE_ASSIGNED)


def claim(namespace: str, created: datetime.datetime) -> RuleClaim:
    return RuleClaim(namespace, "r", created)


def _rule(
    namespace: str = "cal", annotations: dict[str, str] | None = None, **spec: Any
) -> RuleSpec:
    return RuleSpec.from_body(
        {
            "metadata": {"namespace": namespace, "name": "r", "annotations": annotations or {}},
            "spec": {
                "audience": A,
                "subjects": [{"kind": "OAuth2Client", "name": "x"}],
                **spec,
            },
        }
    )


RELEASE = {"kubemint.io/release-audience": "true"}


@pytest.mark.parametrize(
    ("rule", "ownership", "reason", "says"),
    [
        pytest.param(
            _rule(), Own("cal", claimed("cal")), "Reconciled", "all checks passed",
            id="a rule of the owning namespace is ready",
        ),
        pytest.param(
            _rule(), Own("evil", claimed("evil")), "AudienceConflict",
            f"spec.audience: '{A}' is owned by another namespace; this rule grants nothing",
            id="a rule of another namespace conflicts without naming the owner",
        ),
        pytest.param(
            _rule(), Own(None, None, contested=True), "AudienceConflict", "same second",
            id="a contested audience conflicts",
        ),
        pytest.param(
            _rule(), Own(None, None, mode=ASSIGNED), "AudienceNotAssigned", "not assigned",
            id="an unassigned audience in assigned mode is not assigned",
        ),
        pytest.param(
            _rule(), Own("evil", assigned("evil"), assigned=True, mode=ASSIGNED),
            "AudienceNotAssigned", "not assigned",
            id="an audience assigned elsewhere reads exactly like an unassigned one",
        ),
        pytest.param(
            _rule(), Own(None, BROKEN, invalid=True), "AudienceRecordInvalid",
            "unreadable ownership record",
            id="an unreadable record is reported as such",
        ),
        pytest.param(
            _rule(annotations=RELEASE), Own("evil", claimed("evil")), "AudienceReleased",
            "claims no audience",
            id="a releasing rule grants nothing",
        ),
        pytest.param(
            _rule(annotations=RELEASE), Own("cal", claimed("cal")), "AudienceReleased",
            "keeps spec.audience while another of its rules",
            id="a releasing rule of an owner that keeps the audience says why",
        ),
        pytest.param(
            _rule(annotations=RELEASE), Own("cal", assigned("cal"), assigned=True),
            "AudienceReleased", "until a cluster admin changes the assignment",
            id="a releasing rule of an assigned owner points to the admin",
        ),
        pytest.param(
            _rule(when="claims.iss == "), Own("cal", claimed("cal")), "InvalidExpression",
            "spec.when",
            id="a broken condition comes first",
        ),
    ],
)  # fmt: skip
def test_rule_outcome(rule: RuleSpec, ownership: Own, reason: str, says: str) -> None:
    outcome = check_rule(rule, ownership)
    assert outcome.reason == reason
    assert says in outcome.message
    assert "evil" not in outcome.message


def test_in_assigned_mode_unassigned_and_assigned_elsewhere_cannot_be_told_apart() -> None:
    nobody = decide(A, ASSIGNED, None, [claim("cal", T0)])
    elsewhere = decide(A, ASSIGNED, assigned("evil"), [claim("cal", T0)])
    assert check_rule(_rule(), nobody) == check_rule(_rule(), elsewhere)


def test_the_owner_is_shown_only_to_its_own_rules() -> None:
    assert audience_owner_status(_rule(), Own("cal", claimed("cal"))) == "cal"
    assert audience_owner_status(_rule(), Own("evil", claimed("evil"))) is None


def test_only_subjects_of_the_rules_own_namespace_are_looked_up() -> None:
    rule = RuleSpec.from_body(
        {
            "metadata": {"namespace": "cal", "name": "r"},
            "spec": {
                "audience": A,
                "subjects": [
                    {"kind": "OAuth2Client", "name": "here"},
                    {"kind": "OAuth2Client", "name": "later"},
                    {"kind": "OAuth2Client", "namespace": "other", "name": "exists"},
                    {"kind": "OAuth2Client", "namespace": "other", "name": "missing"},
                ],
            },
        }
    )
    existing = frozenset(
        {ObjectRef("OAuth2Client", "cal", "here"), ObjectRef("OAuth2Client", "other", "exists")}
    )
    assert unresolved_subjects(rule, existing) == ["OAuth2Client/cal/later"]
    without_foreign = existing - {ObjectRef("OAuth2Client", "other", "exists")}
    assert subjects_outcome(rule, existing) == subjects_outcome(rule, without_foreign)
    found = subjects_outcome(rule, existing | {ObjectRef("OAuth2Client", "cal", "later")})
    assert found.ready
    assert "other namespaces are not looked up" in found.message
