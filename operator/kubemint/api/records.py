"""The contract between the operator (writer) and the token server (reader): kubemint's Secrets.

Everything one process writes and the other reads back is defined here once: each Secret's
name, labels, data key, JSON shape, encode and decode. (The audience ownership records, which
are ConfigMaps, are defined in kubemint.api.audiences.)

- A **verification record** (client or account) lives in the token server's namespace, where
  tenants cannot write. Its name is derived from the owner's uid (`kubemint-client-<uid>`),
  so no choice of namespace or object name can make two owners share one; the JSON names the
  owner in full (kind, namespace, name, uid) and the reader keys records on that, never on a
  label (labels are for `kubectl get -l` and the operator's label-selected watch only).
- A **keys record** (a SigningKey's private keys) is the Secret `spec.secretName` next to its
  SigningKey, owned by it through a controller ownerReference; the reader accepts it only when
  that reference carries the SigningKey's uid.
- **Ownership**: kubemint writes over, or deletes, only a Secret that it made for that very
  object (the uid in a record's JSON, or the controller ownerReference's uid of a Secret in
  the owner's namespace). Anything else with the name it wants is a conflict, never adopted.
"""

from __future__ import annotations

import base64
import datetime
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kubemint.api.meta import (
    GROUP,
    KIND_ACCOUNT,
    KIND_CLIENT,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAMESPACE,
    LABEL_ROLE,
    MANAGED_BY,
    ROLE_ACCOUNT_VERIFICATION,
    ROLE_CLIENT_VERIFICATION,
    format_time,
    parse_time,
)
from kubemint.crypto.keys import KeyMaterial, Material, PublicMaterial, public_members

LABEL_OWNER_UID = "kubemint.io/owner-uid"
ANNOTATION_OWNER = "kubemint.io/owner"  # "<Kind>/<namespace>/<name>", for people reading it

CLIENT_FIELD = "client.json"
ACCOUNT_FIELD = "account.json"
KEYS_FIELD = "keys.json"

Body = Mapping[str, Any]


class RecordError(ValueError):
    """A Secret that is not a well-formed kubemint record (never trusted, never adopted)."""


@dataclass(frozen=True, slots=True)  # slots: one or more per client in the view
class Owner:
    """The object a Secret belongs to, in full: uids tell a re-created object from its
    predecessor of the same name."""

    kind: str
    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, body: Body) -> Owner:
        meta = body["metadata"]
        return cls(body.get("kind", ""), meta["namespace"], meta["name"], meta["uid"])

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def owner_labels(owner: Owner, role: str) -> dict[str, str]:
    """Labels on every Secret kubemint writes (each value fits the 63-character limit)."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_ROLE: role,
        LABEL_OWNER_KIND: owner.kind,
        LABEL_OWNER_NAMESPACE: owner.namespace,
        LABEL_OWNER_UID: owner.uid,
    }


def owner_annotations(owner: Owner) -> dict[str, str]:
    return {ANNOTATION_OWNER: str(owner)}


# -- secret generations (client secrets, app passwords) --------------------------------------


@dataclass(frozen=True, slots=True)  # slots: one or more per client in the view
class Generation:
    """One secret's verification facts: its digest and, once superseded, when it stops working."""

    sha256: str
    created_at: datetime.datetime
    not_after: datetime.datetime | None = None
    # Only for client_secret_jwt, whose HMAC key is the secret itself (RFC 7523 §2.2).
    hmac_key: str | None = None

    def valid_at(self, now: datetime.datetime) -> bool:
        return self.not_after is None or self.not_after > now

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"sha256": self.sha256, "createdAt": format_time(self.created_at)}
        if self.not_after is not None:
            data["notAfter"] = format_time(self.not_after)
        if self.hmac_key is not None:
            data["hmacKey"] = self.hmac_key
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Generation:
        return cls(
            sha256=str(data["sha256"]),
            created_at=parse_time(data["createdAt"]),
            not_after=parse_time(data["notAfter"]) if data.get("notAfter") else None,
            hmac_key=data.get("hmacKey"),
        )


# -- verification records (token server's namespace) ----------------------------------------


@dataclass(frozen=True, slots=True)  # slots: one or more per client in the view
class ClientRecord:
    """What the token server needs to authenticate one OAuth2Client: digests, never
    plaintext (except HMAC keys for client_secret_jwt, which cannot be verified otherwise)."""

    owner: Owner
    client_id: str
    auth_method: str
    secrets: tuple[Generation, ...] = ()
    jwks: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)  # slots: one or more per client in the view
class AccountRecord:
    """What the token server needs to authenticate one kubemint ServiceAccount."""

    owner: Owner
    subject: str
    username: str
    passwords: tuple[Generation, ...] = ()
    issuer_keys: Mapping[str, Any] | None = None  # issuer URL → public JWKS


Record = ClientRecord | AccountRecord
_KINDS: dict[str, tuple[str, str, str]] = {  # kind → (name prefix, role, data key)
    KIND_CLIENT: ("kubemint-client-", ROLE_CLIENT_VERIFICATION, CLIENT_FIELD),
    KIND_ACCOUNT: ("kubemint-account-", ROLE_ACCOUNT_VERIFICATION, ACCOUNT_FIELD),
}
_ROLES = {role: kind for kind, (_, role, _) in _KINDS.items()}


def record_name(kind: str, uid: str) -> str:
    """The record's Secret name: injective (a uid names one object ever) and short."""
    return _KINDS[kind][0] + uid


def record_role(kind: str) -> str:
    return _KINDS[kind][1]


def encode(record: Record) -> dict[str, str]:
    """The record Secret's data (text; the Kubernetes writer base64-encodes it)."""
    owner = record.owner
    document: dict[str, Any] = {
        "kind": owner.kind,
        "namespace": owner.namespace,
        "name": owner.name,
        "uid": owner.uid,
    }
    if isinstance(record, ClientRecord):
        document |= {
            "clientId": record.client_id,
            "authMethod": record.auth_method,
            "secrets": [g.to_json() for g in record.secrets],
            "jwks": dict(record.jwks) if record.jwks else None,
        }
    else:
        document |= {
            "subject": record.subject,
            "username": record.username,
            "passwords": [g.to_json() for g in record.passwords],
            "issuerKeys": dict(record.issuer_keys or {}),
        }
    return {_KINDS[owner.kind][2]: json.dumps(document, sort_keys=True)}


def decode(secret: Body) -> Record:
    """The record a Secret holds; RecordError unless it is exactly what `encode` writes,
    under the name `record_name` gives its owner."""
    meta = secret.get("metadata") or {}
    role = (meta.get("labels") or {}).get(LABEL_ROLE)
    kind = _ROLES.get(str(role))
    if kind is None:
        raise RecordError(f"Secret {meta.get('name')} is not a verification record")
    text = secret_text(secret).get(_KINDS[kind][2])
    try:
        document = json.loads(text or "")
        owner = Owner(kind, document["namespace"], document["name"], document["uid"])
        if document.get("kind", kind) != kind or not all(
            isinstance(v, str) and v for v in (owner.namespace, owner.name, owner.uid)
        ):
            raise RecordError("owner fields are missing or of the wrong kind")
        record: Record
        if kind == KIND_CLIENT:
            record = ClientRecord(
                owner=owner,
                client_id=str(document["clientId"]),
                auth_method=str(document["authMethod"]),
                secrets=tuple(Generation.from_json(g) for g in document.get("secrets") or ()),
                jwks=document.get("jwks") or None,
            )
        else:
            record = AccountRecord(
                owner=owner,
                subject=str(document["subject"]),
                username=str(document["username"]),
                passwords=tuple(Generation.from_json(g) for g in document.get("passwords") or ()),
                issuer_keys=document.get("issuerKeys") or {},
            )
    except RecordError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RecordError(f"Secret {meta.get('name')}: unreadable record") from exc
    if meta.get("name") != record_name(kind, owner.uid):
        raise RecordError(f"Secret {meta.get('name')} is not named after its owner's uid")
    return record


def legacy_record_name(kind: str, namespace: str, name: str) -> str:
    """Where kubemint ≤ 0.x kept a record (`client-<namespace>-<name>`: not injective, which
    is why records are now named after uids). Only for removing them after an upgrade."""
    full = f"{_KINDS[kind][0].removeprefix('kubemint-')}{namespace}-{name}"
    if len(full) <= 253:
        return full
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:16]
    return f"{full[:230].rstrip('.-')}-{digest}"


def is_legacy_record_of(secret: Body, owner: Owner) -> bool:
    """A pre-upgrade record written for exactly this object (its JSON carries the uid)."""
    try:
        document = json.loads(secret_text(secret).get(_KINDS[owner.kind][2]) or "")
        return bool(document.get("uid") == owner.uid)
    except (ValueError, AttributeError):
        return False


def decode_or_none(secret: Body | None) -> Record | None:
    if secret is None:
        return None
    try:
        return decode(secret)
    except RecordError:
        return None


# -- signing keys (the SigningKey's own Secret, in the token server's namespace) -------------
#
# keys.json: {"keys": [key, ...], "withdrawn": [{"kid", "withdrawnAt"}, ...]}. Each key has
# kid, alg, use, state, createdAt (and activatedAt, retiredAt, removeAfter when set) and
# - `privateKey` (PKCS#8 PEM): the active and next keys, and retired encryption keys (which
#   decrypt the tokens encrypted to them);
# - otherwise `publicJwk` (public members only) and, for signing keys, `opaqueKey`: a retired
#   signing key only verifies (kubemint.crypto.custody). Secrets written before this format
#   hold `privateKey` for retired signing keys too: they read the same, and the operator
#   rewrites them without it.
# `withdrawn` records the kids taken out after a suspected compromise (annotation
# kubemint.io/withdraw), so that a withdrawn key never comes back; absent in older Secrets.

State = Literal["active", "next", "retired"]
STATES: tuple[State, ...] = ("active", "next", "retired")
MAX_WITHDRAWN = 64  # records kept (newest), as status.withdrawn's maxItems


@dataclass(frozen=True)
class StoredKey:
    material: Material
    state: State
    created_at: datetime.datetime
    activated_at: datetime.datetime | None = None
    retired_at: datetime.datetime | None = None
    remove_after: datetime.datetime | None = None

    @property
    def kid(self) -> str:
        return self.material.kid

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kid": self.material.kid,
            "alg": self.material.algorithm,
            "use": self.material.use,
            "state": self.state,
            "createdAt": format_time(self.created_at),
        }
        for name, value in (
            ("activatedAt", self.activated_at),
            ("retiredAt", self.retired_at),
            ("removeAfter", self.remove_after),
        ):
            if value is not None:
                data[name] = format_time(value)
        material = self.material
        if isinstance(material, PublicMaterial):
            data["publicJwk"] = dict(material.jwk)
            if material.opaque_secret is not None:
                data["opaqueKey"] = material.opaque_secret
        else:
            data["privateKey"] = material.private_pem
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoredKey:
        def when(name: str) -> datetime.datetime | None:
            return parse_time(data[name]) if data.get(name) else None

        created = when("createdAt")
        if created is None:
            raise KeyError("createdAt")
        state = data["state"]
        if state not in STATES:
            raise ValueError(f"unknown key state {state!r}")
        material: Material
        if "privateKey" in data:
            material = KeyMaterial(data["kid"], data["alg"], data["use"], data["privateKey"])
        elif state == "retired":
            opaque = data.get("opaqueKey")
            material = PublicMaterial(
                data["kid"],
                data["alg"],
                data["use"],
                public_members(data["publicJwk"]),
                opaque_secret=str(opaque) if opaque else None,
            )
        else:  # an active or next key signs (or is about to): it needs its private key
            raise KeyError("privateKey")
        return cls(
            material=material,
            state=state,
            created_at=created,
            activated_at=when("activatedAt"),
            retired_at=when("retiredAt"),
            remove_after=when("removeAfter"),
        )


@dataclass(frozen=True)
class Withdrawal:
    """A key taken out after a suspected compromise: never published or used again."""

    kid: str
    withdrawn_at: datetime.datetime

    def to_json(self) -> dict[str, str]:
        return {"kid": self.kid, "withdrawnAt": format_time(self.withdrawn_at)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Withdrawal:
        return cls(str(data["kid"]), parse_time(data["withdrawnAt"]))


@dataclass(frozen=True)
class KeySet:
    """Everything keys.json holds."""

    keys: tuple[StoredKey, ...] = ()
    withdrawn: tuple[Withdrawal, ...] = ()


def withdrawn_kids(keys: Sequence[StoredKey], named: Iterable[str]) -> frozenset[str]:
    """The kids a withdrawal of `named` takes out of `keys`: those, and with the active key the
    staged next one (it sat in the same Secret and never signed). The operator's rule, which
    the token server applies too, so a withdrawal holds before the operator has acted."""
    out = set(named)
    if any(k.state == "active" and k.kid in out for k in keys):
        out |= {k.kid for k in keys if k.state == "next"}
    return frozenset(out)


def encode_keys(keys: Sequence[StoredKey], withdrawn: Sequence[Withdrawal] = ()) -> dict[str, str]:
    document: dict[str, Any] = {"keys": [k.to_json() for k in keys]}
    if withdrawn:
        document["withdrawn"] = [w.to_json() for w in withdrawn[-MAX_WITHDRAWN:]]
    return {KEYS_FIELD: json.dumps(document)}


def decode_key_set(secret: Body | None) -> KeySet:
    """keys.json of a SigningKey's Secret; RecordError when its content is unreadable."""
    if secret is None:
        return KeySet()
    try:
        document = json.loads(secret_text(secret).get(KEYS_FIELD) or "{}")
        return KeySet(
            keys=tuple(StoredKey.from_json(k) for k in document.get("keys", [])),
            withdrawn=tuple(Withdrawal.from_json(w) for w in document.get("withdrawn") or ()),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RecordError("unreadable keys.json") from exc


def decode_keys(secret: Body | None) -> tuple[StoredKey, ...]:
    """Keys from a SigningKey's Secret; RecordError when its content is unreadable."""
    return decode_key_set(secret).keys


# -- ownership ----------------------------------------------------------------------------


class Ownership(enum.Enum):
    ABSENT = "absent"  # no Secret of that name: kubemint may create it
    OURS = "ours"  # kubemint made it for this very object: it may be replaced or deleted
    FOREIGN = "foreign"  # someone else's, or another object's: never touched


def controller(secret: Body) -> Owner | None:
    """The kubemint object that controls a Secret through its ownerReference (which
    Kubernetes confines to the Secret's own namespace)."""
    meta = secret.get("metadata") or {}
    for ref in meta.get("ownerReferences") or ():
        if (
            ref.get("controller")
            and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
            and ref.get("kind")
            and ref.get("name")
            and ref.get("uid")
        ):
            return Owner(str(ref["kind"]), meta.get("namespace", ""), ref["name"], ref["uid"])
    return None


def controller_uid(secret: Body) -> str | None:
    found = controller(secret)
    return found.uid if found is not None else None


def ownership(secret: Body | None, owner: Owner, *, record: bool) -> Ownership:
    """Whose Secret this is: for a verification record the uid in its JSON decides, for a
    Secret in the owner's namespace (or a keys Secret) the controller ownerReference."""
    if secret is None:
        return Ownership.ABSENT
    if record:
        found = decode_or_none(secret)
        uid = found.owner.uid if found is not None and found.owner.kind == owner.kind else None
    else:
        uid = controller_uid(secret)
    return Ownership.OURS if uid == owner.uid else Ownership.FOREIGN


def secret_text(secret: Body) -> dict[str, str]:
    """A Secret's data as text."""
    return {
        k: base64.b64decode(v).decode(errors="replace")
        for k, v in (secret.get("data") or {}).items()
    }
