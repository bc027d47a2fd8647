"""AccessRule decisions: audience ownership, `when` compilation, subject resolution.

One namespace owns an audience: the namespace of the oldest AccessRule naming it (ties broken
by namespace/name, so every replica and the token server decide alike). A rule elsewhere that
claims an owned audience is not Ready (AudienceConflict) and grants nothing.
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
    """The namespace owning an audience, given every rule that names it."""
    oldest = min(claims, key=lambda c: (c.created, c.namespace, c.name), default=None)
    return oldest.namespace if oldest else None


def check_rule(spec: RuleSpec, owner: str | None) -> Outcome:
    if spec.when:
        try:
            compile_condition(spec.when)
        except ExpressionError as exc:
            return Outcome(False, "InvalidExpression", str(exc))
    if owner is not None and owner != spec.namespace:
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
