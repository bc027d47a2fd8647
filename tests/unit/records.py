"""Objects and kubemint's Secrets as the real writers make them, for snapshot-based tests.

Record Secrets come from `kubemint.api.records` (the one definition the operator writes
with), so a test cannot drift from the contract; uids are stable per kind/namespace/name.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from kubemint.api.meta import API_VERSION, KIND_ACCOUNT, KIND_CLIENT, KIND_SIGNING_KEY
from kubemint.api.records import (
    AccountRecord,
    ClientRecord,
    Generation,
    Owner,
    StoredKey,
    encode,
    encode_keys,
    owner_labels,
    record_name,
    record_role,
)

SERVER_NAMESPACE = "kubemint-system"


def uid_of(kind: str, namespace: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{namespace}/{name}"))


def with_uid(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """`body` with `kind` and a stable `metadata.uid` (as the API server would give it)."""
    meta = body["metadata"]
    meta.setdefault("uid", uid_of(kind, meta["namespace"], meta["name"]))
    body.setdefault("kind", kind)
    return body


def _data(text: Mapping[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in text.items()}


def _record_secret(record: ClientRecord | AccountRecord, server_namespace: str) -> dict[str, Any]:
    owner = record.owner
    return {
        "metadata": {
            "namespace": server_namespace,
            "name": record_name(owner.kind, owner.uid),
            "labels": owner_labels(owner, record_role(owner.kind)),
        },
        "data": _data(encode(record)),
    }


def client_record(
    namespace: str,
    name: str,
    *,
    secrets: Sequence[Generation] = (),
    jwks: Mapping[str, Any] | None = None,
    client_id: str | None = None,
    auth_method: str = "client_secret_basic",
    server_namespace: str = SERVER_NAMESPACE,
) -> dict[str, Any]:
    owner = Owner(KIND_CLIENT, namespace, name, uid_of(KIND_CLIENT, namespace, name))
    record = ClientRecord(
        owner, client_id or f"{namespace}.{name}", auth_method, tuple(secrets), jwks
    )
    return _record_secret(record, server_namespace)


def account_record(
    namespace: str,
    name: str,
    *,
    passwords: Sequence[Generation] = (),
    issuer_keys: Mapping[str, Any] | None = None,
    server_namespace: str = SERVER_NAMESPACE,
) -> dict[str, Any]:
    owner = Owner(KIND_ACCOUNT, namespace, name, uid_of(KIND_ACCOUNT, namespace, name))
    record = AccountRecord(
        owner,
        f"kubemint:serviceaccount:{namespace}:{name}",
        name,
        tuple(passwords),
        dict(issuer_keys or {}),
    )
    return _record_secret(record, server_namespace)


def keys_secret(
    name: str,
    keys: Sequence[StoredKey],
    *,
    namespace: str = SERVER_NAMESPACE,
    secret_name: str | None = None,
) -> dict[str, Any]:
    """A SigningKey's Secret, controlled by it (ownerReference with its uid)."""
    owner = Owner(KIND_SIGNING_KEY, namespace, name, uid_of(KIND_SIGNING_KEY, namespace, name))
    return {
        "metadata": {
            "namespace": namespace,
            "name": secret_name or f"{name}-signing-keys",
            "labels": owner_labels(owner, "signing-keys"),
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND_SIGNING_KEY,
                    "name": name,
                    "uid": owner.uid,
                    "controller": True,
                }
            ],
        },
        "data": _data(encode_keys(keys)),
    }


def build(**inputs: Any) -> Any:
    """`build_snapshot` over hand-written bodies, each given its kind and a stable uid."""
    from kubemint.store.snapshot import build_snapshot

    kinds = {"clients": KIND_CLIENT, "accounts": KIND_ACCOUNT, "signing_keys": KIND_SIGNING_KEY}
    for field, kind in kinds.items():
        inputs[field] = [with_uid(kind, b) for b in inputs.get(field, ())]
    inputs.setdefault("server_namespace", SERVER_NAMESPACE)
    return build_snapshot(**inputs)
