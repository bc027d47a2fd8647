"""AccessRule decisions: audience ownership, `when` compilation, subject resolution.

One namespace owns an audience: the namespace of the oldest AccessRule naming it. Creation
times have one-second precision, so rules from different namespaces created in the same
second tie; a tie is not broken by anything an intruder could choose (such as a namespace
name): the audience is contested and nobody owns it until only one namespace claims it
first. A rule that does not own its audience is not Ready (AudienceConflict) and grants
nothing. The operator and the token server decide with this same function.
"""

from __future__ import annotations

from kubemint.api.accessrule import RuleSpec
from kubemint.api.meta import ObjectRef, Outcome
from kubemint.policy.expressions import ExpressionError, compile_condition


def check_rule(spec: RuleSpec, owner: str | None) -> Outcome:
    if spec.when:
        try:
            compile_condition(spec.when)
        except ExpressionError as exc:
            return Outcome(False, "InvalidExpression", str(exc))
    if owner is None:
        return Outcome(
            False,
            "AudienceConflict",
            f"spec.audience: {spec.audience!r} was claimed by several namespaces in the same "
            "second; nobody owns it until all but one remove their rules",
        )
    if owner != spec.namespace:
        return Outcome(
            False,
            "AudienceConflict",
            f"spec.audience: {spec.audience!r} is owned by namespace {owner}; this rule grants "
            "nothing",
        )
    return Outcome.ok()


def unresolved_subjects(spec: RuleSpec, existing: frozenset[ObjectRef]) -> list[str]:
    """Subjects that do not exist (reported, not fatal: they may be created later)."""
    return [str(s) for s in spec.subjects if s not in existing]
