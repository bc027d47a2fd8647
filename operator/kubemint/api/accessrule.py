"""AccessRule as Python reads it: every spec field, parsed once.

`spec.http` entries are kept in their canonical form (lower-case hosts without a trailing
dot, paths as whole-segment prefixes, upper-case methods); `kubemint.authz.rules` decides
which entry matches a request.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubemint.api.meta import KIND_ACCESS_RULE, ObjectRef


@dataclass(frozen=True)
class HttpRule:
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    methods: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()

    @classmethod
    def from_spec(cls, raw: Mapping[str, Any]) -> HttpRule:
        return cls(
            hosts=tuple(str(h).lower().rstrip(".") for h in raw.get("hosts") or ()),
            paths=tuple(_prefix(str(p)) for p in raw.get("paths") or ()),
            methods=frozenset(str(m).upper() for m in raw.get("methods") or ()),
            scopes=frozenset(str(s) for s in raw.get("scopes") or ()),
        )


@dataclass(frozen=True)
class RuleSpec:
    namespace: str
    name: str
    audience: str
    subjects: tuple[ObjectRef, ...]
    when: str | None
    scopes: frozenset[str] = frozenset()
    http: tuple[HttpRule, ...] = ()

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RuleSpec:
        """Raises KeyError/TypeError/ValueError for a body the CRD would not admit."""
        meta, spec = body["metadata"], body.get("spec") or {}
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            audience=spec.get("audience", ""),
            subjects=tuple(
                ObjectRef(s["kind"], s.get("namespace") or meta["namespace"], s["name"])
                for s in spec.get("subjects") or []
            ),
            when=spec.get("when") or None,
            scopes=frozenset(spec.get("scopes") or ()),
            http=tuple(HttpRule.from_spec(h) for h in spec.get("http") or ()),
        )

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(KIND_ACCESS_RULE, self.namespace, self.name)


def _prefix(path: str) -> str:
    """Canonical prefix: no trailing or repeated slashes, "/" for the root."""
    return "/" + "/".join(s for s in path.split("/") if s)


@dataclass(frozen=True)
class RuleClaim:
    """One AccessRule's claim on an audience, as kept in the operator's index."""

    namespace: str
    name: str
    created: datetime.datetime


def audience_owner(claims: Iterable[RuleClaim]) -> str | None:
    """The namespace owning an audience, given every rule that names it; None when no rule
    names it or when the oldest claims come from several namespaces (contested)."""
    claims = list(claims)
    if not claims:
        return None
    oldest = min(c.created for c in claims)
    first = {c.namespace for c in claims if c.created == oldest}
    return first.pop() if len(first) == 1 else None
