"""SigningKey rotation: the next key is staged (published) before it signs; old keys retire.

States: `next` (in JWKS, not signing) → `active` (signing) → `retired` (in JWKS until
`removeAfter`, so tokens it signed keep verifying) → removed. A next key always exists, made
when the previous one was promoted, so it is published for a whole rotation period; a
scheduled promotion also waits until the next key has been published for `prePublish`.
A manual rotation (annotation `kubemint.io/rotate` set to a new value) promotes at once,
unless one was done less than the operator's manual-rotation interval ago or too many retired
keys are still published: then it is deferred (status and an Event say until when), and done
by the first reconcile after that, never dropped.

A retired signing key only verifies: it keeps its public part (kubemint.crypto.custody),
and key sets written before that rule are converged on their first reconcile.

A withdrawal (annotation `kubemint.io/withdraw` naming kids, after a suspected compromise)
takes those keys out at once: out of JWKS, so tokens they signed stop verifying. Withdrawing
the active key also discards the staged next key (it sat in the same Secret and never
signed), and a fresh key signs from then on, with a fresh next key staged. Withdrawn kids are
recorded (in the Secret and status) and taken out again if they ever come back, e.g. with a
restored backup; naming one again changes nothing.

The schedule's bounds (a floor on `every`, higher for RSA, whose keys take seconds to make;
`retainAfter` within a few periods) are the CRD's rules; `check_schedule` repeats them for
objects stored before a rule existed, and the operator then generates nothing for them.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from kubemint.api.meta import (
    ANNOTATION_ROTATE,
    ANNOTATION_WITHDRAW,
    Outcome,
    format_time,
    parse_time,
)
from kubemint.api.records import MAX_WITHDRAWN, State, StoredKey, Withdrawal, withdrawn_kids
from kubemint.api.signingkey import (
    MAX_RETAINED_ROTATIONS,
    MAX_RETIRED_KEYS,
    MIN_EVERY,
    MIN_RSA_EVERY,
    SigningKeySpec,
)
from kubemint.crypto import custody, keys
from kubemint.crypto.keys import KeyMaterial, Material

DEFAULT_MANUAL_INTERVAL = datetime.timedelta(minutes=1)

UNKNOWN_KID = "UnknownKid"
"""Ready=False reason: kubemint.io/withdraw names a kid that is not (and never was recorded
as) a key of this SigningKey. The kids it does know are withdrawn all the same."""
INVALID_WITHDRAWAL = "InvalidWithdrawal"
"""Ready=False reason: the kubemint.io/withdraw annotation is not a list of kids."""


@dataclass(frozen=True)
class RotationPlan:
    keys: tuple[StoredKey, ...]
    events: tuple[tuple[str, str], ...]  # (reason, message); kids only, never key material
    next_rotation_at: datetime.datetime
    next_check_at: datetime.datetime
    manual_rotation: str | None  # the annotation value acted on (or already acted on)
    manual_rotation_at: datetime.datetime | None = None  # when the last one was done
    deferred_until: datetime.datetime | None = None  # a pending manual rotation waits until
    withdrawn: tuple[Withdrawal, ...] = ()  # every withdrawal recorded, oldest first
    unknown_withdrawals: tuple[str, ...] = ()  # kids the annotation names that are not ours
    warnings: tuple[tuple[str, str], ...] = ()  # (reason, message) for Warning Events

    @property
    def active(self) -> StoredKey:
        return next(k for k in self.keys if k.state == "active")

    @property
    def next(self) -> StoredKey:
        return next(k for k in self.keys if k.state == "next")

    @property
    def retired(self) -> tuple[StoredKey, ...]:
        return tuple(k for k in self.keys if k.state == "retired")

    def status(self) -> dict[str, Any]:
        """The SigningKey's status fields (kids and times only)."""
        active, upcoming = self.active, self.next
        return {
            "active": {
                "kid": active.material.kid,
                "algorithm": active.material.algorithm,
                "use": active.material.use,
                "createdAt": format_time(active.created_at),
                "activatedAt": format_time(active.activated_at or active.created_at),
            },
            "next": {
                "kid": upcoming.material.kid,
                "createdAt": format_time(upcoming.created_at),
                "publishedAt": format_time(upcoming.created_at),
            },
            "retired": [
                {
                    "kid": k.material.kid,
                    "retiredAt": format_time(k.retired_at or k.created_at),
                    "removeAfter": format_time(k.remove_after or k.created_at),
                }
                for k in self.retired
            ],
            "nextRotationAt": format_time(self.next_rotation_at),
            "lastManualRotation": self.manual_rotation,
            "lastManualRotationAt": _iso(self.manual_rotation_at),
            "manualRotationDeferredUntil": _iso(self.deferred_until),
            "withdrawn": [w.to_json() for w in self.withdrawn] or None,
        }

    def summary(self) -> str:
        """The Ready message: which key signs, and what is scheduled or waiting."""
        kid, due = self.active.material.kid, format_time(self.next_rotation_at)
        if self.deferred_until is not None:
            return (
                f"active key {kid}, next rotation at {due}; the rotation requested by "
                f"kubemint.io/rotate is deferred until {format_time(self.deferred_until)}"
            )
        return f"active key {kid}, next rotation at {due}"


def plan_rotation(
    spec: SigningKeySpec,
    stored: tuple[StoredKey, ...],
    now: datetime.datetime,
    *,
    manual_request: str | None,
    last_manual: str | None,
    last_manual_at: datetime.datetime | None = None,
    deferred_before: datetime.datetime | None = None,
    manual_interval: datetime.timedelta = DEFAULT_MANUAL_INTERVAL,
    status_active_kid: str | None = None,
    withdraw: tuple[str, ...] = (),
    withdrawn_before: tuple[Withdrawal, ...] = (),
    generate: Callable[[str, int | None], KeyMaterial] = keys.generate,
    verify_only: Callable[[Material], Material] = custody.verify_only,
) -> RotationPlan:
    """The key set at `now`: withdraw, generate, promote, retire and remove as the schedule
    and the annotations say.

    `last_manual_at` is when the last manual rotation was done and `deferred_before` the
    deferral status already shows (so its Event is posted once, not on every reconcile);
    `status_active_kid` is the active kid status shows, to tell a stale view (below).
    `withdraw` are the kids kubemint.io/withdraw names, `withdrawn_before` the withdrawals
    already recorded (the Secret's and status's). `verify_only` is what a retired key keeps."""
    events: list[tuple[str, str]] = []
    stored, withdrawn, unknown, warnings = _withdraw(stored, withdraw, withdrawn_before, now)

    def new_key(state: State) -> StoredKey:
        material = generate(spec.algorithm, spec.key_size)
        verb = "generated active" if state == "active" else "published next"
        events.append(("KeyGenerated", f"{verb} key {material.kid} ({spec.algorithm})"))
        return StoredKey(material, state, now, activated_at=now if state == "active" else None)

    def retire(key: StoredKey) -> StoredKey:
        events.append(
            (
                "KeyRetired",
                f"retired key {key.material.kid}; it stays in JWKS until "
                f"{format_time(now + spec.retain_after)}",
            )
        )
        return replace(
            key,
            material=verify_only(key.material),
            state="retired",
            retired_at=now,
            remove_after=now + spec.retain_after,
        )

    def promote(key: StoredKey, why: str) -> StoredKey:
        events.append(("KeyRotated", f"key {key.material.kid} now signs ({why})"))
        return replace(key, state="active", activated_at=now)

    retired: list[StoredKey] = []
    converged = 0
    for key in stored:
        if key.state != "retired":
            continue
        if key.remove_after is not None and key.remove_after <= now:
            events.append(("KeyRemoved", f"removed retired key {key.material.kid} from JWKS"))
            continue
        kept = verify_only(key.material)  # a key set written before retired keys verify only
        converged += kept != key.material
        retired.append(replace(key, material=kept))
    if converged:
        events.append(
            (
                "PrivateKeysDropped",
                f"dropped the private keys of {converged} retired keys from the Secret; "
                "their public keys stay in JWKS",
            )
        )

    def fits(key: StoredKey) -> bool:
        material = key.material
        return isinstance(material, KeyMaterial) and keys.matches(
            material, spec.algorithm, spec.key_size
        )

    active = next((k for k in stored if k.state == "active"), None)
    upcoming = next((k for k in stored if k.state == "next" and fits(k)), None)

    if active is None or not fits(active):
        # First key, or the algorithm/size changed: a key that fits must sign from now on.
        if active is not None:
            retired.append(retire(active))
        active = promote(upcoming, "spec changed") if upcoming else new_key("active")
        upcoming = None

    manual = manual_request if manual_request and manual_request != last_manual else None
    stored_active = next((k for k in stored if k.state == "active"), None)
    if stored_active is not None and status_active_kid not in (None, stored_active.material.kid):
        # Status lags the Secret: another reconcile (e.g. the change handler, while this
        # timer waited for the lock) rotated since this view was read, perhaps for this
        # very request. Its status write is what the next reconcile acts on.
        manual = None
    deferred, manual_at = None, last_manual_at
    if manual is not None and upcoming is not None:
        deferred, why = manual_deferral(now, last_manual_at, manual_interval, retired)
        if deferred is not None:
            if _iso(deferred) != _iso(deferred_before):
                events.append(
                    (
                        "RotationDeferred",
                        "the rotation requested by kubemint.io/rotate is deferred until "
                        f"{format_time(deferred)}: {why}",
                    )
                )
            manual = None  # still requested: done by the first reconcile after `deferred`
        else:
            manual_at = now
    if upcoming is not None and (manual is not None or now >= _due(spec, active, upcoming)):
        retired.append(retire(active))
        active = promote(upcoming, f"{ANNOTATION_ROTATE} requested it" if manual else "scheduled")
        upcoming = None
    if upcoming is None:
        upcoming = new_key("next")

    next_rotation = _due(spec, active, upcoming)
    removals = [k.remove_after for k in retired if k.remove_after is not None]
    return RotationPlan(
        keys=(active, upcoming, *sorted(retired, key=lambda k: k.retired_at or now)),
        events=tuple(events),
        next_rotation_at=next_rotation,
        next_check_at=min([next_rotation, *removals, *([deferred] if deferred else [])]),
        manual_rotation=last_manual if deferred else (manual_request or last_manual),
        manual_rotation_at=manual_at,
        deferred_until=deferred,
        withdrawn=withdrawn,
        unknown_withdrawals=unknown,
        warnings=warnings,
    )


def _withdraw(
    stored: tuple[StoredKey, ...],
    requested: tuple[str, ...],
    before: tuple[Withdrawal, ...],
    now: datetime.datetime,
) -> tuple[
    tuple[StoredKey, ...], tuple[Withdrawal, ...], tuple[str, ...], tuple[tuple[str, str], ...]
]:
    """The stored keys without the withdrawn ones; the withdrawal record; the requested
    kids that are not ours; Warning Events. Recorded kids are withdrawn again when present."""
    recorded = {w.kid for w in before}
    targets = set(requested) | recorded
    # With the active key goes the staged next one: it sat in the same Secret and never
    # signed, so discarding it costs nothing, and the key that signs from now on is one
    # nobody could have copied.
    taken = withdrawn_kids(stored, targets)
    hit = [k for k in stored if k.kid in taken]
    warnings: list[tuple[str, str]] = []
    for key in hit:
        if key.kid in targets:
            message = (
                f"withdrew {key.state} key {key.kid} ({ANNOTATION_WITHDRAW}): it is no longer "
                "in JWKS and tokens it signed are refused"
            )
        else:
            message = (
                f"discarded the staged next key {key.kid} with the withdrawn active key (both "
                "were in the same Secret); a fresh key signs now"
            )
        warnings.append(("KeyWithdrawn", message))
    record = list(before)
    for key in hit:
        if key.kid not in recorded:
            recorded.add(key.kid)
            record.append(Withdrawal(key.kid, now))
    present = {k.kid for k in stored}
    unknown = tuple(kid for kid in requested if kid not in present and kid not in recorded)
    kept = tuple(k for k in stored if k not in hit)
    return kept, tuple(record[-MAX_WITHDRAWN:]), unknown, tuple(warnings)


def merge_withdrawals(*records: tuple[Withdrawal, ...]) -> tuple[Withdrawal, ...]:
    """One record from several (the Secret's and status's): each kid once, earliest first."""
    first: dict[str, Withdrawal] = {}
    for withdrawal in (w for record in records for w in record):
        held = first.get(withdrawal.kid)
        if held is None or withdrawal.withdrawn_at < held.withdrawn_at:
            first[withdrawal.kid] = withdrawal
    return tuple(sorted(first.values(), key=lambda w: (w.withdrawn_at, w.kid)))


def check_withdrawal(plan: RotationPlan) -> Outcome | None:
    """A problem when kubemint.io/withdraw names kids this SigningKey never had."""
    if not plan.unknown_withdrawals:
        return None
    kids = ", ".join(plan.unknown_withdrawals)
    return Outcome(
        False,
        UNKNOWN_KID,
        f"metadata.annotations[kubemint.io/withdraw]: no key of this SigningKey has kid {kids} "
        "(see status.active.kid, status.next.kid and status.retired); the other kids it names "
        "are withdrawn",
    )


def withdrawal_refused(problem: ValueError) -> Outcome:
    return Outcome(False, INVALID_WITHDRAWAL, str(problem))


def manual_deferral(
    now: datetime.datetime,
    last_manual_at: datetime.datetime | None,
    interval: datetime.timedelta,
    retired: list[StoredKey],
) -> tuple[datetime.datetime | None, str]:
    """When a manual rotation requested now may be done (None: now), and why it waits.

    Each one generates a key (seconds of CPU for RSA) and keeps the old one published for
    retainAfter, so they are spaced by `interval` and wait while MAX_RETIRED_KEYS retired
    keys are still in JWKS (until enough of them have been removed)."""
    waits: list[tuple[datetime.datetime, str]] = []
    if last_manual_at is not None and now < last_manual_at + interval:
        waits.append(
            (
                last_manual_at + interval,
                f"manual rotations are limited to one every {int(interval.total_seconds())}s",
            )
        )
    if len(retired) >= MAX_RETIRED_KEYS:
        removals = sorted(k.remove_after or now for k in retired)
        waits.append(
            (
                removals[len(retired) - MAX_RETIRED_KEYS],
                f"{len(retired)} retired keys are still published, at most {MAX_RETIRED_KEYS}",
            )
        )
    if not waits:
        return None, ""
    return max(waits)


def status_time(value: Any) -> datetime.datetime | None:
    """A time the operator wrote into status, or None when absent or unreadable."""
    try:
        return parse_time(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _iso(moment: datetime.datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None


def active_since(key: StoredKey) -> datetime.datetime:
    return key.activated_at or key.created_at


def _due(spec: SigningKeySpec, active: StoredKey, upcoming: StoredKey) -> datetime.datetime:
    """Promotion time: a full period of signing, and the next key published long enough."""
    return max(active_since(active) + spec.every, upcoming.created_at + spec.pre_publish)


def check_retention(
    spec: SigningKeySpec, lifetimes: Mapping[str, datetime.timedelta]
) -> Outcome | None:
    """A problem when a client using this key issues tokens that outlive `retainAfter`.

    `lifetimes` maps "namespace/name" of each client signing with this key to its token
    lifetime. Such tokens would fail verification once their key leaves JWKS.
    """
    too_long = {name: life for name, life in lifetimes.items() if life > spec.retain_after}
    if not too_long:
        return None
    name, life = max(too_long.items(), key=lambda item: item[1])
    return Outcome(
        False,
        "RetainAfterTooShort",
        f"spec.rotation.retainAfter ({int(spec.retain_after.total_seconds())}s) is shorter than "
        f"the tokenLifetime of OAuth2Client {name} ({int(life.total_seconds())}s); tokens it "
        "issues would fail verification after a rotation",
    )


def check_namespace(namespace: str, server_namespace: str) -> Outcome | None:
    """SigningKeys are honoured only in the token server's namespace (cluster admins'):
    elsewhere the operator generates nothing, so tenants cannot spend its CPU on keys."""
    if namespace == server_namespace:
        return None
    return Outcome(
        False,
        "WrongNamespace",
        f"metadata.namespace: SigningKeys must live in the token server's namespace "
        f"{server_namespace}",
    )


def check_schedule(spec: SigningKeySpec) -> Outcome | None:
    """The CRD's rules on spec.rotation, for a SigningKey stored before they existed (the
    API server admits no new one that breaks them): the operator generates nothing for it
    until the spec is fixed. Messages are the CEL rules' own."""
    problem = None
    if spec.every < MIN_EVERY:
        problem = "spec.rotation.every must be at least 1s"
    elif spec.algorithm in keys.RSA_ALGORITHMS and spec.every < MIN_RSA_EVERY:
        problem = (
            "spec.rotation.every must be at least 1h for RSA keys (spec.algorithm RS256, PS256 "
            "or RSA-OAEP-256): each rotation generates an RSA key, which takes seconds of CPU"
        )
    elif spec.pre_publish >= spec.every:
        problem = "spec.rotation.prePublish must be shorter than spec.rotation.every"
    elif spec.retain_after > spec.every * MAX_RETAINED_ROTATIONS:
        problem = (
            "spec.rotation.retainAfter must be at most 24 times spec.rotation.every: each "
            "rotation keeps the retired key in JWKS for retainAfter"
        )
    return Outcome(False, "InvalidRotation", problem) if problem else None
