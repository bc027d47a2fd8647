"""AccessRule decisions: audience ownership, `when` compilation, subject resolution.

One namespace owns an audience: the namespace of the oldest AccessRule naming it. Creation
times have one-second precision, so rules from different namespaces created in the same
second tie; a tie is not broken by anything an intruder could choose (such as a namespace
name): the audience is contested and nobody owns it until only one namespace claims it
first. A rule that does not own its audience is not Ready (AudienceConflict) and grants
nothing. The operator and the token server decide with this same function.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubemint.api.meta import ObjectRef, Outcome
from kubemint.policy.expressions import ExpressionError, compile_condition


@dataclass(frozen=True)
class RuleClaim:
    """One AccessRule's claim on an audience, as kept in the operator's index."""

    namespace: str
    name: str
    created: datetime.datetime


@dataclass(frozen=True)
class RuleSpec:
    namespace: str
    name: str
    audience: str
    subjects: tuple[ObjectRef, ...]
    when: str | None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RuleSpec:
        meta, spec = body["metadata"], body.get("spec") or {}
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            audience=spec.get("audience", ""),
            subjects=tuple(
                ObjectRef(s["kind"], s.get("namespace") or meta["namespace"], s["name"])
                for s in spec.get("subjects") or []
            ),
            when=spec.get("when"),
        )


def audience_owner(claims: Iterable[RuleClaim]) -> str | None:
    """The namespace owning an audience, given every rule that names it; None when no rule
    names it or when the oldest claims come from several namespaces (contested)."""
    claims = list(claims)
    if not claims:
        return None
    oldest = min(c.created for c in claims)
    first = {c.namespace for c in claims if c.created == oldest}
    return first.pop() if len(first) == 1 else None


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
