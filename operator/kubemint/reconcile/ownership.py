"""Whether kubemint may write a Secret: only over one it made for this very object.

A tenant picks Secret names in its own namespace (`spec.secret.name`), so the Secret there
may be someone else's: another client's credentials, or a Secret kubemint never made. Writing
over it would lose that data or hand one object's credentials to another, so it is a
`SecretConflict` naming the field; nothing is written until the name is free. A verification
record in the server namespace is named after the owner's uid, so a foreign one there means a
cluster admin put it there: `RecordConflict`, also left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubemint.api.meta import Outcome
from kubemint.api.records import Owner, Ownership, ownership


def secret_conflict(
    live: Mapping[str, Any] | None, owner: Owner, field: str, name: str
) -> Outcome | None:
    """A Secret in the owner's namespace (credentials, app password, signing keys)."""
    if ownership(live, owner, record=False) is not Ownership.FOREIGN:
        return None
    return Outcome(
        False,
        "SecretConflict",
        f"{field}: Secret {owner.namespace}/{name} exists and was not created by kubemint for "
        f"this {owner.kind}; kubemint does not overwrite it. Choose another name, or delete "
        "that Secret if it is no longer needed",
    )


def record_conflict(
    live: Mapping[str, Any] | None, owner: Owner, server_namespace: str, name: str
) -> Outcome | None:
    """A verification record in the token server's namespace."""
    if ownership(live, owner, record=True) is not Ownership.FOREIGN:
        return None
    return Outcome(
        False,
        "RecordConflict",
        f"the verification record Secret {server_namespace}/{name} exists but was not written "
        f"for this {owner.kind}; a cluster admin must remove it",
    )
