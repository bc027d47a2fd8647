"""Audience ownership: the record that says who owns an audience, and the one decision.

**The record** (the operator ↔ token-server contract for audiences; the Secrets are in
kubemint.api.records): one ConfigMap per audience in the token server's namespace (not a
Secret: ownership is no credential), written by the operator when a namespace first claims an
audience, or by a cluster admin to assign one (by hand, `kubemint assign-audience`, or the
chart's `audiences.assignments`):

    metadata.name   kubemint-audience-<SHA-256 of the audience, 64 hex digits>
    labels          kubemint.io/role: audience-owner   (what the readers select on)
    data.audience   the audience itself: the name is only a lookup key, and a record whose
                    name is not the digest of its `audience` is not a record for it
    data.namespace  the owning namespace
    data.source     `claimed` (the operator wrote it on a first claim: released by the owner,
                    or with its namespace through an ownerReference) | `assigned` (an admin's;
                    the operator never changes or deletes it; the default when absent)

The name is injective in the audience (a digest, checked against the data on every read),
so the API server itself guarantees one record per audience. Readers look a record up by the
name computed from the audience and trust no label beyond the selection.

**The decision** (`decide`), made by the operator (which then writes the record) and by the
token server (which grants only the owner's rules) with this same function:

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

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubemint.api.accessrule import RuleClaim, audience_owner
from kubemint.api.meta import LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY

ROLE_AUDIENCE_OWNER = "audience-owner"
SELECTOR = f"{LABEL_ROLE}={ROLE_AUDIENCE_OWNER}"
PREFIX = "kubemint-audience-"
FIELD_AUDIENCE = "audience"
FIELD_NAMESPACE = "namespace"
FIELD_SOURCE = "source"
SOURCE_CLAIMED = "claimed"
SOURCE_ASSIGNED = "assigned"
SOURCES = (SOURCE_CLAIMED, SOURCE_ASSIGNED)
FIRST_CLAIM = "firstClaim"  # ownership modes (KUBEMINT_AUDIENCE_OWNERSHIP)
ASSIGNED = "assigned"
MODES = (FIRST_CLAIM, ASSIGNED)
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class InvalidMode(ValueError):
    pass


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidMode(f"KUBEMINT_AUDIENCE_OWNERSHIP must be {' or '.join(MODES)}, not {mode!r}")
    return mode


def record_name(audience: str) -> str:
    """The record's ConfigMap name: a digest, so any audience string maps to a valid name."""
    return PREFIX + hashlib.sha256(audience.encode()).hexdigest()


@dataclass(frozen=True)
class OwnerRecord:
    audience: str
    namespace: str
    source: str  # SOURCE_CLAIMED | SOURCE_ASSIGNED


@dataclass(frozen=True)
class InvalidRecord:
    """A ConfigMap stands at an audience's record name but does not say who owns it: nobody
    does until an admin repairs or deletes it (first-claiming past it would let a typo in an
    assignment hand the audience to whoever claims it first)."""

    audience: str
    problem: str


def decode(body: Mapping[str, Any], audience: str) -> OwnerRecord | InvalidRecord:
    """The record found at `record_name(audience)`, checked against its own data."""
    data = body.get("data") or {}
    name = (body.get("metadata") or {}).get("name")
    if name != record_name(audience):
        return InvalidRecord(audience, f"metadata.name is not {record_name(audience)}")
    if data.get(FIELD_AUDIENCE) != audience:
        return InvalidRecord(audience, "data.audience is not the audience its name is for")
    namespace = data.get(FIELD_NAMESPACE, "")
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        return InvalidRecord(audience, "data.namespace is not a namespace name")
    source = data.get(FIELD_SOURCE, SOURCE_ASSIGNED)
    if source not in SOURCES:
        return InvalidRecord(audience, f"data.source must be one of {', '.join(SOURCES)}")
    return OwnerRecord(audience, namespace, source)


def audience_of(body: Mapping[str, Any]) -> str | None:
    """The audience a record (valid or not) is about, when its name confirms it."""
    audience = (body.get("data") or {}).get(FIELD_AUDIENCE)
    name = (body.get("metadata") or {}).get("name")
    return audience if isinstance(audience, str) and name == record_name(audience) else None


def encode(record: OwnerRecord, namespace: str, owner_uid: str | None = None) -> dict[str, Any]:
    """The ConfigMap for `record` in the server namespace. A claimed record is owned by the
    owning Namespace (`owner_uid`), so the garbage collector removes it with the namespace and
    a namespace re-created under the same name does not inherit the audience."""
    meta: dict[str, Any] = {
        "name": record_name(record.audience),
        "namespace": namespace,
        "labels": {LABEL_ROLE: ROLE_AUDIENCE_OWNER, LABEL_MANAGED_BY: MANAGED_BY},
    }
    if owner_uid is not None:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Namespace", "name": record.namespace, "uid": owner_uid}
        ]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {
            FIELD_AUDIENCE: record.audience,
            FIELD_NAMESPACE: record.namespace,
            FIELD_SOURCE: record.source,
        },
    }


def by_name(bodies: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Records by ConfigMap name, for lookups by `record_name(audience)`."""
    return {b["metadata"]["name"]: b for b in bodies if (b.get("metadata") or {}).get("name")}


# -- the decision ------------------------------------------------------------------------------

Record = OwnerRecord | InvalidRecord | None


@dataclass(frozen=True)
class AudienceOwnership:
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


def decide(
    audience: str, mode: str, record: Record, claims: Iterable[RuleClaim]
) -> AudienceOwnership:
    live = tuple(claims)
    if isinstance(record, InvalidRecord):
        return AudienceOwnership(None, record, invalid=True, mode=mode)
    if record is not None and (mode == FIRST_CLAIM or record.source == SOURCE_ASSIGNED):
        if not _released(record, live):
            return AudienceOwnership(
                record.namespace, record, assigned=record.source == SOURCE_ASSIGNED, mode=mode
            )
        record = None  # given up by its owner: the audience is free again
    if mode == ASSIGNED:
        return AudienceOwnership(None, record, mode=mode)
    claiming = [c for c in live if not c.releasing]
    first = audience_owner(claiming)
    if first is None:
        return AudienceOwnership(None, None, contested=bool(claiming))
    return AudienceOwnership(first, OwnerRecord(audience, first, SOURCE_CLAIMED))


def _released(record: OwnerRecord, claims: tuple[RuleClaim, ...]) -> bool:
    """The owner gave a claimed audience up: it has rules for it, and every one releases.
    (Deleting every rule is no release: that is what a rename or a re-create looks like.)"""
    own = [c for c in claims if c.namespace == record.namespace]
    return record.source == SOURCE_CLAIMED and bool(own) and all(c.releasing for c in own)
