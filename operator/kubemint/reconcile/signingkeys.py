"""SigningKey rotation: the next key is staged (published) before it signs; old keys retire.

States: `next` (in JWKS, not signing) → `active` (signing) → `retired` (in JWKS until
`removeAfter`, so tokens it signed keep verifying) → removed. A next key always exists, made
when the previous one was promoted, so it is published for a whole rotation period; a
scheduled promotion also waits until the next key has been published for `prePublish`.
A manual rotation (annotation `kubemint.io/rotate` set to a new value) promotes at once.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from kubemint.api.meta import ANNOTATION_ROTATE, Outcome, format_time
from kubemint.api.records import State, StoredKey
from kubemint.api.signingkey import SigningKeySpec
from kubemint.crypto import keys
from kubemint.crypto.keys import KeyMaterial


@dataclass(frozen=True)
class RotationPlan:
    keys: tuple[StoredKey, ...]
    events: tuple[tuple[str, str], ...]  # (reason, message); kids only, never key material
    next_rotation_at: datetime.datetime
    next_check_at: datetime.datetime
    manual_rotation: str | None  # the annotation value acted on (or already acted on)

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
        }


def plan_rotation(
    spec: SigningKeySpec,
    stored: tuple[StoredKey, ...],
    now: datetime.datetime,
    *,
    manual_request: str | None,
    last_manual: str | None,
    generate: Callable[[str, int | None], KeyMaterial] = keys.generate,
) -> RotationPlan:
    """The key set at `now`: generate, promote, retire and remove as the schedule says."""
    events: list[tuple[str, str]] = []

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
        return replace(key, state="retired", retired_at=now, remove_after=now + spec.retain_after)

    def promote(key: StoredKey, why: str) -> StoredKey:
        events.append(("KeyRotated", f"key {key.material.kid} now signs ({why})"))
        return replace(key, state="active", activated_at=now)

    retired: list[StoredKey] = []
    for key in stored:
        if key.state != "retired":
            continue
        if key.remove_after is not None and key.remove_after <= now:
            events.append(("KeyRemoved", f"removed retired key {key.material.kid} from JWKS"))
        else:
            retired.append(key)

    def fits(key: StoredKey) -> bool:
        return keys.matches(key.material, spec.algorithm, spec.key_size)

    active = next((k for k in stored if k.state == "active"), None)
    upcoming = next((k for k in stored if k.state == "next" and fits(k)), None)

    if active is None or not fits(active):
        # First key, or the algorithm/size changed: a key that fits must sign from now on.
        if active is not None:
            retired.append(retire(active))
        active = promote(upcoming, "spec changed") if upcoming else new_key("active")
        upcoming = None

    manual = manual_request if manual_request and manual_request != last_manual else None
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
        next_check_at=min([next_rotation, *removals]),
        manual_rotation=manual_request if manual_request else last_manual,
    )


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
