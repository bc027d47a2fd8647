"""One machine secret with scheduled rotation and an overlap window (client secrets, app passwords).

The plaintext lives only in the Secret that workloads mount. The token server verifies with
digests kept in the verification record, which also remembers the previous secret's digest
until its overlap ends, so a rotation never breaks a workload that has not re-read its file.

A mounted Secret that is deleted or edited by hand cannot be restored to its old value (the
plaintext exists nowhere else, by design), so it is treated as a forced rotation: a new
secret is written and the last valid one keeps working for the overlap.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from kubemint.api.records import Generation
from kubemint.crypto import secrets


@dataclass(frozen=True)
class SecretPolicy:
    rotate_every: datetime.timedelta | None
    overlap: datetime.timedelta
    keep_hmac_key: bool = False


@dataclass(frozen=True)
class SecretPlan:
    plaintext: str  # the value the mounted Secret must hold
    generations: tuple[Generation, ...]  # current first, then still-valid previous ones
    events: tuple[tuple[str, str], ...] = field(default=())  # (reason, message), no secrets
    rotated_at: datetime.datetime | None = None  # current secret's creation
    next_rotation_at: datetime.datetime | None = None
    previous_expires_at: datetime.datetime | None = None

    @property
    def next_check_at(self) -> datetime.datetime | None:
        """The earliest moment this plan changes by itself (rotation or end of an overlap)."""
        moments = [self.next_rotation_at, self.previous_expires_at]
        return min((m for m in moments if m is not None), default=None)


def plan_secret(
    presented: str | None,
    generations: tuple[Generation, ...],
    policy: SecretPolicy,
    now: datetime.datetime,
    generate: Callable[[], str] = secrets.generate_secret,
    what: str = "secret",
) -> SecretPlan:
    """Decide the mounted secret's value and the verification generations at `now`."""
    events: list[tuple[str, str]] = []
    live = tuple(g for g in generations if g.not_after is None or g.not_after > now)
    current = live[0] if live and live[0].not_after is None else None
    previous = tuple(g for g in live if g is not current)

    def rotate(
        event: tuple[str, str] | None,
    ) -> tuple[str, Generation, tuple[Generation, ...]]:
        value = generate()
        superseded = (
            (replace(current, not_after=now + policy.overlap),) if current is not None else ()
        )
        if event is not None:
            events.append(event)
        return value, _generation(value, now, policy), superseded + previous

    if (
        presented is not None
        and current is not None
        and secrets.verify(presented, [current.sha256])
    ):
        plaintext, newest, older = presented, current, previous
        if policy.rotate_every is not None and now >= current.created_at + policy.rotate_every:
            plaintext, newest, older = rotate(
                (
                    "SecretRotated",
                    f"{what} rotated on schedule; the previous one stays valid "
                    f"for {_human(policy.overlap)}",
                )
            )
    elif presented is not None and current is None and not previous:
        # Verification record lost (or first adoption): the mounted value is authoritative.
        plaintext, newest, older = presented, _generation(presented, now, policy), ()
        events.append(("SecretAdopted", f"verification data for the existing {what} rebuilt"))
    elif current is None and not previous:
        # The first secret of a new object: no Event (Ready and status.secretRotatedAt say
        # it). It would be one more API write per object, a sixth of a new client's (10,000
        # Events for 10,000 clients), for the expected outcome; Events are for changes.
        plaintext, newest, older = rotate(None)
    else:
        plaintext, newest, older = rotate(
            (
                "SecretRegenerated",
                f"the mounted {what} was missing or edited by hand; a new one was generated "
                f"and the last valid one stays valid for {_human(policy.overlap)}",
            )
        )
    if (newest.hmac_key is not None) != policy.keep_hmac_key:
        # authMethod switched to or from client_secret_jwt: keep HMAC keys only when needed.
        newest = replace(newest, hmac_key=plaintext if policy.keep_hmac_key else None)
    if not policy.keep_hmac_key:
        older = tuple(replace(g, hmac_key=None) for g in older)
    next_rotation = newest.created_at + policy.rotate_every if policy.rotate_every else None
    expiries = [g.not_after for g in older if g.not_after is not None]
    return SecretPlan(
        plaintext=plaintext,
        generations=(newest, *older),
        events=tuple(events),
        rotated_at=newest.created_at,
        next_rotation_at=next_rotation,
        previous_expires_at=max(expiries) if expiries else None,
    )


def _generation(value: str, now: datetime.datetime, policy: SecretPolicy) -> Generation:
    return Generation(
        sha256=secrets.digest(value),
        created_at=now,
        hmac_key=value if policy.keep_hmac_key else None,
    )


def _human(delta: datetime.timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
