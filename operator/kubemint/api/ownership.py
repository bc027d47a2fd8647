"""The audience-ownership record: who owns an audience, kept where tenants cannot write.

One ConfigMap per audience in the token server's namespace (not a Secret: ownership is no
credential), written by the operator when a namespace first claims an audience, or by a
cluster admin to assign one (by hand, or through the chart's `audiences.assignments`):

    metadata.name   kubemint-audience-<SHA-256 of the audience, 64 hex digits>
    labels          kubemint.io/role: audience-owner   (what the readers select on)
    data.audience   the audience itself: the name is only a lookup key, and a record whose
                    name is not the digest of its `audience` is not a record for it
    data.namespace  the owning namespace
    data.source     `claimed` (the operator wrote it on a first claim: released by the owner,
                    or with its namespace through an ownerReference) | `assigned` (an admin's;
                    the operator never changes or deletes it)

The name is injective in the audience (a digest, checked against the data on every read),
so the API server itself guarantees one record per audience. Readers key records on the
name computed from the audience they look up and trust no label beyond the selection.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


def index(bodies: Any) -> dict[str, Mapping[str, Any]]:
    """Records by ConfigMap name, for lookups by `record_name(audience)`."""
    return {b["metadata"]["name"]: b for b in bodies if (b.get("metadata") or {}).get("name")}
