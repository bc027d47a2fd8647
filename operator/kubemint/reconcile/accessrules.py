"""AccessRule decisions: first claims, rule validity, subject resolution, `when` compilation.

Who owns an audience is decided in kubemint.api.audiences from the durable ownership record
(and, where there is none, its first-claim rule `audience_owner`: the namespace of the
oldest claim). Creation times have one-second precision, so rules from
different namespaces created in the same second tie; a tie is not broken by anything an
intruder could choose (such as a namespace name): the audience is contested and nobody owns
it until only one namespace claims it first. A rule that does not own its audience is not
Ready and grants nothing.

Status speaks only of the rule's own namespace: subjects elsewhere are not looked up (their
existence is not the rule owner's to learn), and another namespace's ownership is reported
without naming it.
"""

from __future__ import annotations

from kubemint.api.accessrule import RuleSpec
from kubemint.api.audiences import ASSIGNED, AudienceOwnership
from kubemint.api.meta import ObjectRef, Outcome
from kubemint.policy.expressions import ExpressionError, compile_condition

AUDIENCE_CONFLICT = "AudienceConflict"
"""Another namespace owns the audience (or several claimed it in the same second)."""
AUDIENCE_RELEASED = "AudienceReleased"
"""The rule carries kubemint.io/release-audience: it grants nothing and claims nothing."""
AUDIENCE_NOT_ASSIGNED = "AudienceNotAssigned"
"""Assigned mode: no cluster admin assigned the audience to this namespace."""
AUDIENCE_RECORD_INVALID = "AudienceRecordInvalid"
"""An unreadable ownership record stands at the audience's name."""


def check_rule(spec: RuleSpec, ownership: AudienceOwnership) -> Outcome:
    """Ready, or the first reason the rule grants nothing. No message names, or tells apart,
    other namespaces: "owned by another namespace" is all a refused rule learns."""
    if spec.when:
        try:
            compile_condition(spec.when)
        except ExpressionError as exc:
            return Outcome(False, "InvalidExpression", str(exc))
    if spec.releasing:
        return Outcome(False, AUDIENCE_RELEASED, _released_message(spec, ownership))
    if ownership.owner == spec.namespace:
        return Outcome.ok()
    if ownership.invalid:
        return Outcome(
            False,
            AUDIENCE_RECORD_INVALID,
            f"spec.audience: {spec.audience!r} has an unreadable ownership record; nobody owns "
            "it until a cluster admin repairs or deletes the record",
        )
    if ownership.contested:
        return Outcome(
            False,
            AUDIENCE_CONFLICT,
            f"spec.audience: {spec.audience!r} was claimed by several namespaces in the same "
            "second; nobody owns it until all but one remove their rules",
        )
    if ownership.mode == ASSIGNED:  # unassigned and assigned elsewhere read the same
        return Outcome(
            False,
            AUDIENCE_NOT_ASSIGNED,
            f"spec.audience: {spec.audience!r} is not assigned to this namespace: in this "
            "cluster a cluster admin assigns audiences; this rule grants nothing",
        )
    return Outcome(
        False,
        AUDIENCE_CONFLICT,
        f"spec.audience: {spec.audience!r} is owned by another namespace; this rule grants nothing",
    )


def _released_message(spec: RuleSpec, ownership: AudienceOwnership) -> str:
    if ownership.owner != spec.namespace:
        return (
            "metadata.annotations: kubemint.io/release-audience is set: this rule grants "
            "nothing and claims no audience"
        )
    if ownership.assigned:
        return (
            "metadata.annotations: kubemint.io/release-audience is set: this rule grants "
            "nothing; spec.audience stays assigned to this namespace until a cluster admin "
            "changes the assignment"
        )
    return (
        "metadata.annotations: kubemint.io/release-audience is set: this rule grants nothing; "
        "this namespace keeps spec.audience while another of its rules for it lacks the "
        "annotation"
    )


def audience_owner_status(spec: RuleSpec, ownership: AudienceOwnership) -> str | None:
    """status.audienceOwner: shown only when it is the rule's own namespace."""
    return spec.namespace if ownership.owner == spec.namespace else None


def local_subjects(spec: RuleSpec) -> list[ObjectRef]:
    return [s for s in spec.subjects if s.namespace == spec.namespace]


def unresolved_subjects(spec: RuleSpec, existing: frozenset[ObjectRef]) -> list[str]:
    """Subjects in the rule's own namespace that do not exist (reported, not fatal: they may
    be created later). Subjects elsewhere are not looked up: whether they exist is not the
    rule owner's to learn."""
    return [str(s) for s in local_subjects(spec) if s not in existing]


def subjects_outcome(spec: RuleSpec, existing: frozenset[ObjectRef]) -> Outcome:
    """The SubjectsResolved condition."""
    missing = unresolved_subjects(spec, existing)
    if missing:
        return Outcome(
            False, "SubjectNotFound", f"spec.subjects: {', '.join(missing)} do not exist"
        )
    if len(local_subjects(spec)) < len(spec.subjects):
        return Outcome(
            True,
            "AllFound",
            "every subject in this namespace exists; subjects in other namespaces are not "
            "looked up",
        )
    return Outcome(True, "AllFound", "every subject exists")
