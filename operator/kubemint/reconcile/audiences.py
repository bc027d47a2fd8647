"""Who owns an audience: the durable record first, a first claim only where there is none.

Ownership is decided from the audience's ownership record (kubemint.api.ownership) and the
live AccessRules naming the audience, by this one pure function, in the operator (which then
writes the record) and in the token server (which grants only the owner's rules):

- A record names the owner, and it stays the owner whatever happens to its rules: deleting,
  renaming or re-creating them changes nothing, so a rule refused earlier is never promoted.
- A record moves only by an explicit act: the owning namespace releases a claimed record
  (every one of its rules for the audience carries `kubemint.io/release-audience: "true"`),
  a cluster admin edits or deletes the record, or the owning namespace is deleted (the
  garbage collector removes a claimed record with it).
- Without a record, in `firstClaim` mode, the oldest live claim owns the audience (and the
  operator records it); claims from several namespaces in the same second tie and nobody owns
  the audience until only one namespace claims it first. A releasing rule claims nothing.
- In `assigned` mode only records an admin wrote (`source: assigned`) count: there are no
  first claims, and claimed records from an earlier first-claim period are ignored (and kept).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kubemint.api.ownership import (
    ASSIGNED,
    FIRST_CLAIM,
    SOURCE_ASSIGNED,
    SOURCE_CLAIMED,
    InvalidRecord,
    OwnerRecord,
)
from kubemint.reconcile.accessrules import RuleClaim, audience_owner

Record = OwnerRecord | InvalidRecord | None


@dataclass(frozen=True)
class Ownership:
    """The decision for one audience.

    `owner` is the namespace whose rules grant (None: nobody's do). `record` is the record
    that should exist afterwards; the operator writes it when it differs from the live one
    (it differs only for claimed records in first-claim mode). `contested` and `invalid` say
    why nobody owns an audience that rules claim.
    """

    owner: str | None
    record: Record
    contested: bool = False
    assigned: bool = False  # the owner holds it by an admin's assignment
    invalid: bool = False  # an unreadable record stands at the audience's name
    mode: str = FIRST_CLAIM  # in `assigned` mode a refused rule learns only "not assigned"


def decide(audience: str, mode: str, record: Record, claims: Iterable[RuleClaim]) -> Ownership:
    live = tuple(claims)
    if isinstance(record, InvalidRecord):
        return Ownership(None, record, invalid=True, mode=mode)
    if record is not None and (mode == FIRST_CLAIM or record.source == SOURCE_ASSIGNED):
        if not _released(record, live):
            return Ownership(
                record.namespace, record, assigned=record.source == SOURCE_ASSIGNED, mode=mode
            )
        record = None  # given up by its owner: the audience is free again
    if mode == ASSIGNED:
        return Ownership(None, record, mode=mode)
    claiming = [c for c in live if not c.releasing]
    first = audience_owner(claiming)
    if first is None:
        return Ownership(None, None, contested=bool(claiming))
    return Ownership(first, OwnerRecord(audience, first, SOURCE_CLAIMED))


def _released(record: OwnerRecord, claims: tuple[RuleClaim, ...]) -> bool:
    """The owner gave a claimed audience up: it has rules for it, and every one releases.
    (Deleting every rule is no release: that is what a rename or a re-create looks like.)"""
    own = [c for c in claims if c.namespace == record.namespace]
    return record.source == SOURCE_CLAIMED and bool(own) and all(c.releasing for c in own)
