"""Who owns an audience (kubemint.reconcile.audiences.decide) and what a rule's status says."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kubemint.api.meta import ObjectRef
from kubemint.api.ownership import (
    ASSIGNED,
    FIRST_CLAIM,
    SOURCE_ASSIGNED,
    SOURCE_CLAIMED,
    InvalidRecord,
    OwnerRecord,
)
from kubemint.reconcile.accessrules import (
    RuleClaim,
    RuleSpec,
    audience_owner_status,
    check_rule,
    subjects_outcome,
    unresolved_subjects,
)
from kubemint.reconcile.audiences import Ownership, Record, decide

A = "https://calendar.test"
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(seconds=1)
T2 = T0 + datetime.timedelta(seconds=2)


def claim(namespace: str, created: datetime.datetime, releasing: bool = False) -> RuleClaim:
    return RuleClaim(namespace, f"rule-{created.second}", created, releasing)


def claimed(namespace: str) -> OwnerRecord:
    return OwnerRecord(A, namespace, SOURCE_CLAIMED)


def assigned(namespace: str) -> OwnerRecord:
    return OwnerRecord(A, namespace, SOURCE_ASSIGNED)


BROKEN = InvalidRecord(A, "data.namespace is not a namespace name")


@pytest.mark.parametrize(
    ("mode", "record", "claims", "owner", "kept"),
    [
        pytest.param(
            FIRST_CLAIM, None, [claim("cal", T0), claim("evil", T1)], "cal", claimed("cal"),
            id="without a record the oldest claim owns the audience and is recorded",
        ),
        pytest.param(
            FIRST_CLAIM, None, [claim("cal", T0), claim("evil", T0)], None, None,
            id="claims from two namespaces in the same second leave the audience to nobody",
        ),
        pytest.param(
            FIRST_CLAIM, None, [claim("cal", T0), claim("cal", T0)], "cal", claimed("cal"),
            id="two rules of one namespace in the same second are no contest",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"), [claim("evil", T0)], "cal", claimed("cal"),
            id="an owner that deleted every rule keeps the audience",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"), [claim("evil", T0), claim("cal", T2)], "cal",
            claimed("cal"),
            id="an owner whose re-created rule is younger than a refused one keeps the audience",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"), [claim("cal", T0, releasing=True), claim("evil", T1)],
            "evil", claimed("evil"),
            id="an owner releasing its only rule hands the audience to the oldest other claim",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"),
            [claim("cal", T0, releasing=True), claim("cal", T1), claim("evil", T1)],
            "cal", claimed("cal"),
            id="an owner keeps the audience while one of its rules does not release it",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"), [claim("cal", T0, releasing=True)], None, None,
            id="a release with no other claim deletes the record",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"),
            [claim("cal", T0, releasing=True), claim("a", T1), claim("b", T1)], None, None,
            id="a release to claims tied in the same second leaves the audience to nobody",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"), [claim("cal", T1), claim("evil", T0, releasing=True)],
            "cal", claimed("cal"),
            id="a release by another namespace than the owner changes nothing",
        ),
        pytest.param(
            FIRST_CLAIM, None, [claim("cal", T0, releasing=True), claim("evil", T1)], "evil",
            claimed("evil"),
            id="a releasing rule claims nothing",
        ),
        pytest.param(
            FIRST_CLAIM, assigned("cal"), [claim("cal", T0, releasing=True), claim("evil", T1)],
            "cal", assigned("cal"),
            id="an assignment is not released by the namespace it names",
        ),
        pytest.param(
            FIRST_CLAIM, assigned("cal"), [claim("evil", T0)], "cal", assigned("cal"),
            id="an assignment outranks an older claim in first-claim mode",
        ),
        pytest.param(
            FIRST_CLAIM, BROKEN, [claim("cal", T0)], None, BROKEN,
            id="an unreadable record leaves the audience to nobody rather than to a first claim",
        ),
        pytest.param(
            ASSIGNED, None, [claim("cal", T0)], None, None,
            id="in assigned mode a claim alone owns nothing",
        ),
        pytest.param(
            ASSIGNED, assigned("cal"), [claim("evil", T0), claim("cal", T1)], "cal",
            assigned("cal"),
            id="in assigned mode the assigned namespace owns the audience",
        ),
        pytest.param(
            ASSIGNED, claimed("cal"), [claim("cal", T0)], None, claimed("cal"),
            id="in assigned mode an earlier first claim owns nothing and its record is kept",
        ),
    ],
)  # fmt: skip
def test_ownership(
    mode: str, record: Record, claims: list[RuleClaim], owner: str | None, kept: Record
) -> None:
    decision = decide(A, mode, record, claims)
    assert decision.owner == owner
    assert decision.record == kept


def test_the_decision_does_not_depend_on_the_order_of_claims() -> None:
    claims = [claim("evil", T1), claim("cal", T0)]
    assert decide(A, FIRST_CLAIM, None, claims) == decide(A, FIRST_CLAIM, None, claims[::-1])


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
            _rule(), Ownership("cal", claimed("cal")), "Reconciled", "all checks passed",
            id="a rule of the owning namespace is ready",
        ),
        pytest.param(
            _rule(), Ownership("evil", claimed("evil")), "AudienceConflict",
            f"spec.audience: '{A}' is owned by another namespace; this rule grants nothing",
            id="a rule of another namespace conflicts without naming the owner",
        ),
        pytest.param(
            _rule(), Ownership(None, None, contested=True), "AudienceConflict", "same second",
            id="a contested audience conflicts",
        ),
        pytest.param(
            _rule(), Ownership(None, None, mode=ASSIGNED), "AudienceNotAssigned", "not assigned",
            id="an unassigned audience in assigned mode is not assigned",
        ),
        pytest.param(
            _rule(), Ownership("evil", assigned("evil"), assigned=True, mode=ASSIGNED),
            "AudienceNotAssigned", "not assigned",
            id="an audience assigned elsewhere reads exactly like an unassigned one",
        ),
        pytest.param(
            _rule(), Ownership(None, BROKEN, invalid=True), "AudienceRecordInvalid",
            "unreadable ownership record",
            id="an unreadable record is reported as such",
        ),
        pytest.param(
            _rule(annotations=RELEASE), Ownership("evil", claimed("evil")), "AudienceReleased",
            "claims no audience",
            id="a releasing rule grants nothing",
        ),
        pytest.param(
            _rule(annotations=RELEASE), Ownership("cal", claimed("cal")), "AudienceReleased",
            "keeps spec.audience while another of its rules",
            id="a releasing rule of an owner that keeps the audience says why",
        ),
        pytest.param(
            _rule(annotations=RELEASE), Ownership("cal", assigned("cal"), assigned=True),
            "AudienceReleased", "until a cluster admin changes the assignment",
            id="a releasing rule of an assigned owner points to the admin",
        ),
        pytest.param(
            _rule(when="claims.iss == "), Ownership("cal", claimed("cal")), "InvalidExpression",
            "spec.when",
            id="a broken condition comes first",
        ),
    ],
)  # fmt: skip
def test_rule_outcome(rule: RuleSpec, ownership: Ownership, reason: str, says: str) -> None:
    outcome = check_rule(rule, ownership)
    assert outcome.reason == reason
    assert says in outcome.message
    assert "evil" not in outcome.message


def test_in_assigned_mode_unassigned_and_assigned_elsewhere_cannot_be_told_apart() -> None:
    nobody = decide(A, ASSIGNED, None, [claim("cal", T0)])
    elsewhere = decide(A, ASSIGNED, assigned("evil"), [claim("cal", T0)])
    assert check_rule(_rule(), nobody) == check_rule(_rule(), elsewhere)


def test_the_owner_is_shown_only_to_its_own_rules() -> None:
    assert audience_owner_status(_rule(), Ownership("cal", claimed("cal"))) == "cal"
    assert audience_owner_status(_rule(), Ownership("evil", claimed("evil"))) is None


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
