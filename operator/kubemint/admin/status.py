"""`kubemint status`: what is not Ready, which rotations are due, which keys are in JWKS and why.

Read from the objects' own status (what the operator decided and wrote: conditions, the
SigningKeys' active, next, retired and withdrawn kids with their times) and, when the issuer is
known, from the JWKS the token server serves, so a key served for no reason the SigningKeys
give, or one they publish that is not served, shows.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubemint.api.meta import KIND_SIGNING_KEY
from kubemint.api.signingkey import withdrawn_by
from kubemint.reconcile.signingkeys import status_time

Body = dict[str, Any]


@dataclass
class Problem:
    kind: str
    object: str  # namespace/name
    reason: str
    message: str


@dataclass
class Rotation:
    kind: str
    object: str
    what: str  # the status field, e.g. nextRotationAt
    at: str
    due: bool  # at or before now


@dataclass
class Key:
    signing_key: str
    kid: str
    state: str  # active, next, retired, withdrawn
    why: str
    served: bool | None = None  # in the issuer's JWKS (None: not fetched)


@dataclass
class Status:
    problems: list[Problem] = field(default_factory=list)
    rotations: list[Rotation] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)  # served kids no SigningKey names
    unreadable: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "problems": [p.__dict__ for p in self.problems],
            "rotations": [r.__dict__ for r in self.rotations],
            "keys": [k.__dict__ for k in self.keys],
            "unexplained": self.unexplained,
            "unreadable": self.unreadable,
        }


def status(
    objects: Mapping[str, list[Body]],
    *,
    now: datetime.datetime,
    within: datetime.timedelta,
    server_namespace: str,
    jwks: Mapping[str, Any] | None = None,
) -> Status:
    found = Status()
    for kind, bodies in objects.items():
        for body in sorted(bodies, key=_name):
            problem = not_ready(kind, body)
            if problem is not None:
                found.problems.append(problem)
            found.rotations += _rotations(kind, body, now, within)
    served = (
        {str(k.get("kid")) for k in jwks.get("keys") or () if isinstance(k, Mapping)}
        if jwks is not None
        else None
    )
    for body in objects.get(KIND_SIGNING_KEY, []):
        if (body.get("metadata") or {}).get("namespace") == server_namespace:
            found.keys += _keys(body, served)
    if served is not None:
        named = {k.kid for k in found.keys}
        found.unexplained = sorted(served - named)
    return found


def not_ready(kind: str, body: Body) -> Problem | None:
    meta, status_ = body.get("metadata") or {}, body.get("status") or {}
    ready = next((c for c in status_.get("conditions") or () if c.get("type") == "Ready"), None)
    name = _name(body)
    if ready is None:
        return Problem(kind, name, "NotReconciled", "no Ready condition yet")
    if ready.get("status") != "True":
        return Problem(kind, name, str(ready.get("reason", "")), str(ready.get("message", "")))
    observed, generation = status_.get("observedGeneration"), meta.get("generation")
    if isinstance(observed, int) and isinstance(generation, int) and observed < generation:
        return Problem(
            kind, name, "Stale", f"Ready is for generation {observed}; the spec is at {generation}"
        )
    return None


def _rotations(
    kind: str, body: Body, now: datetime.datetime, within: datetime.timedelta
) -> list[Rotation]:
    """Scheduled times in status (`next…At`, `…DeferredUntil`, `previousSecretExpiresAt`)
    that fall within `within` of now, or are past."""
    out = []
    for key, value in sorted((body.get("status") or {}).items()):
        if not (
            (key.startswith("next") and key.endswith("At"))
            or key.endswith("DeferredUntil")
            or key == "previousSecretExpiresAt"
        ):
            continue
        moment = status_time(value)
        if moment is not None and moment <= now + within:
            out.append(Rotation(kind, _name(body), key, str(value), moment <= now))
    return out


def _keys(body: Body, served: set[str] | None) -> list[Key]:
    name, status_ = body["metadata"]["name"], body.get("status") or {}
    withdrawn = withdrawn_by(body)
    keys: list[Key] = []
    active, upcoming = status_.get("active") or {}, status_.get("next") or {}
    if active.get("kid"):
        keys.append(
            Key(name, active["kid"], "active", f"signs now (since {active.get('activatedAt')})")
        )
    if upcoming.get("kid"):
        keys.append(
            Key(
                name,
                upcoming["kid"],
                "next",
                f"pre-published (since {upcoming.get('publishedAt')}) so verifiers have it "
                f"before it signs at {status_.get('nextRotationAt')}",
            )
        )
    for retired in status_.get("retired") or ():
        if isinstance(retired, Mapping) and retired.get("kid"):
            keys.append(
                Key(
                    name,
                    retired["kid"],
                    "retired",
                    f"stopped signing at {retired.get('retiredAt')}; kept until "
                    f"{retired.get('removeAfter')} so the tokens it signed still verify",
                )
            )
    for key in keys:
        if key.kid in withdrawn:
            key.state, key.why = "withdrawn", "withdrawn (kubemint.io/withdraw): must not be served"
    for kid in sorted(withdrawn - {k.kid for k in keys}):
        keys.append(
            Key(name, kid, "withdrawn", "withdrawn (kubemint.io/withdraw): must not be served")
        )
    if served is not None:
        for key in keys:
            key.served = key.kid in served
    return keys


def _name(body: Body) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"
