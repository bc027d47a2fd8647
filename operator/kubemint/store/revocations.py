"""Revoked tokens, shared by every replica through the Kubernetes API.

The record format is defined here, once: the token server writes it and reads it back by
watch (no other process reads it). Every object is a ConfigMap of the server namespace
labelled `kubemint.io/role=revocations`:

- **Entry** `kubemint-rv-<sha256(jti)[:40]>`: one revoked token, `data: {<jti>: "<exp>"}`,
  annotated with the revoking client's id. One small object per revocation, so a write costs
  the same however many revocations exist (the hourly buckets this replaces rewrote a
  shared, growing object on every revocation: 2,000 revocations by one client grew etcd by
  140 MB, against 2.3 MB as entries (`make bench-revocation`), and a full 1 MiB bucket would
  have refused revocation to every tenant for that hour). Named from
  the jti, so revoking a token twice is one object (409 on the second create).
- **Watermark** `kubemint-rvw-<sha256(client id)[:40]>`: "every token of this client issued
  at or before T (`iat` ≤ T) is revoked". A client may keep `quota` live entries; a
  revocation beyond that is never refused (that would leave the token working) but moves the
  client's watermark to now: one object per client, updated in place, so the excess costs
  the store nothing more and costs only that client (its other tokens of that time stop too;
  it gets new ones). A revocation already covered (its jti, or `iat` ≤ the watermark)
  writes nothing.
- **Legacy bucket** `kubemint-revoked-<hour>` (before this format): `data: {<jti>: "<exp>"}`.
  Still read, never written, and deleted by the sweeper once its hour has passed (at most
  24 h after the upgrade), so revocations made before an upgrade keep holding. Entries keep
  the same `data` shape so a replica of the previous version, during a rolling upgrade,
  honours them too (it ignores watermarks).

Entries and watermarks carry `kubemint.io/revocation-expires`: the 10-minute slot after which
nothing they cover can still be valid (an entry: its token's `exp`; a watermark: T plus the
longest token lifetime). The sweeper deletes each expired slot with one label-selected
deleteCollection, so garbage collection costs one request per slot, not one per object.
A ConfigMap (not a Secret) because a `jti` is not a credential.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubemint.api.meta import LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY
from kubemint.api.oauth2client import MAX_LIFETIME

log = logging.getLogger("kubemint.revocations")
Body = dict[str, Any]
ROLE_REVOCATIONS = "revocations"
SELECTOR = f"{LABEL_ROLE}={ROLE_REVOCATIONS}"
LABEL_KIND = "kubemint.io/revocation"  # entry | watermark (legacy buckets have none)
LABEL_EXPIRES = "kubemint.io/revocation-expires"  # the GC slot, see slot_of
LABEL_CLIENT_UID = "kubemint.io/client-uid"  # for people (kubectl -l); decides nothing
ANNOTATION_CLIENT = "kubemint.io/client-id"
ANNOTATION_ISSUED_UNTIL = "kubemint.io/issued-until"  # a watermark's T (epoch seconds)
ENTRY, WATERMARK = "entry", "watermark"
ENTRY_PREFIX = "kubemint-rv-"
WATERMARK_PREFIX = "kubemint-rvw-"
PREFIX = "kubemint-revoked-"  # legacy hourly buckets
BUCKET = 3600  # a legacy bucket's span
SLOT = 600  # seconds per GC slot
LEEWAY = 300  # kept this long past expiry (clock skew between replicas and verifiers)
LONGEST = int(MAX_LIFETIME.total_seconds())
DEFAULT_QUOTA = 100  # live entries per client before its watermark takes over
DEFAULT_WRITES_PER_MINUTE = 60  # store writes per client per minute (per replica)
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DATA_KEY = re.compile(r"^[-._A-Za-z0-9]{1,253}$")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def entry_name(jti: str) -> str:
    return ENTRY_PREFIX + _digest(jti)


def watermark_name(client_id: str) -> str:
    return WATERMARK_PREFIX + _digest(client_id)


def slot_of(expires: int) -> int:
    """The GC slot of something valid until `expires`: the first slot that starts after it."""
    return expires // SLOT + 1


def slot_expired(slot: int, now: float) -> bool:
    return slot * SLOT + LEEWAY < now


def expired_buckets(names: Iterable[str], now: float) -> list[str]:
    """Legacy buckets whose every token has expired (with leeway)."""
    out = []
    for name in names:
        hour = name.removeprefix(PREFIX)
        if name.startswith(PREFIX) and hour.isdigit() and (int(hour) + 1) * BUCKET + LEEWAY < now:
            out.append(name)
    return out


@dataclass(frozen=True)
class Target:
    """What a revocation is about: a verified token of `client_id` (see oauth.introspection)."""

    jti: str
    expires: int
    issued_at: int | None
    client_id: str
    client_uid: str = ""


class Plan(enum.Enum):
    NOTHING = "nothing"  # already revoked (its entry, or the client's watermark covers it)
    ENTRY = "entry"
    WATERMARK = "watermark"


def plan(*, covered: bool, live_entries: int, quota: int) -> Plan:
    """What one revocation writes: nothing when it already holds, an entry while the client
    is under its quota, else its watermark (never a refusal: the token must stop)."""
    if covered:
        return Plan.NOTHING
    if live_entries < quota:
        return Plan.ENTRY
    return Plan.WATERMARK


def _metadata(
    name: str, namespace: str, kind: str, expires: int, client_id: str, client_uid: str
) -> Body:
    labels = {
        LABEL_ROLE: ROLE_REVOCATIONS,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_KIND: kind,
        LABEL_EXPIRES: str(slot_of(expires)),
    }
    if _LABEL_VALUE.match(client_uid):
        labels[LABEL_CLIENT_UID] = client_uid
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": {ANNOTATION_CLIENT: client_id},
    }


def entry_body(namespace: str, target: Target) -> Body:
    if not _DATA_KEY.match(target.jti):  # kubemint's own jtis are base64url: never here
        raise ValueError("a jti that is not a ConfigMap key")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(
            entry_name(target.jti),
            namespace,
            ENTRY,
            target.expires,
            target.client_id,
            target.client_uid,
        ),
        "data": {target.jti: str(target.expires)},
    }


def watermark_body(namespace: str, client_id: str, client_uid: str, until: int) -> Body:
    metadata = _metadata(
        watermark_name(client_id), namespace, WATERMARK, until + LONGEST, client_id, client_uid
    )
    metadata["annotations"][ANNOTATION_ISSUED_UNTIL] = str(until)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}


@dataclass(frozen=True)
class Record:
    """What one revocation object says: revoked jtis (→ exp), and/or a client's watermark."""

    jtis: Mapping[str, int] = field(default_factory=dict)
    client_id: str = ""  # an entry's or a watermark's client ("" for a legacy bucket)
    issued_until: int | None = None  # a watermark's T
    slot: int | None = None  # the GC slot (None: a legacy bucket)
    name: str = ""
    version: str = ""  # its resourceVersion (a watermark's conditional update)


def read_record(body: Mapping[str, Any]) -> Record:
    """One revocation ConfigMap, whatever its kind; what does not read is left out."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    client_id = str(annotations.get(ANNOTATION_CLIENT, ""))
    slot_text = str(labels.get(LABEL_EXPIRES, ""))
    slot = int(slot_text) if slot_text.isdigit() else None
    name = str(meta.get("name", ""))
    version = str(meta.get("resourceVersion", ""))
    if labels.get(LABEL_KIND) == WATERMARK:
        until = str(annotations.get(ANNOTATION_ISSUED_UNTIL, ""))
        if not client_id or not until.isdigit():
            return Record(slot=slot, name=name, version=version)
        return Record(
            client_id=client_id, issued_until=int(until), slot=slot, name=name, version=version
        )
    jtis = {
        str(jti): int(exp)
        for jti, exp in (body.get("data") or {}).items()
        if isinstance(exp, str) and exp.isdigit()
    }
    return Record(jtis=jtis, client_id=client_id, slot=slot, name=name)


def _key(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class RevocationIndex:
    """Revoked jtis and clients' watermarks, updated per watch event (not by rebuilding the
    view): a revocation costs the index one object's worth of work. Reads (`revokes`) take no
    lock: they are dict lookups, each atomic; writes hold one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, Record] = {}
        self._jtis: dict[str, int] = {}  # jti → how many objects hold it (legacy + entry)
        self._by_client: dict[str, dict[str, int]] = {}  # client id → its entries' jti → exp
        self._watermarks: dict[str, Record] = {}  # client id → its watermark

    # --- fed by the informer ---------------------------------------------------------------
    def reset(self, bodies: Iterable[Mapping[str, Any]]) -> None:
        fresh = RevocationIndex()
        for body in bodies:
            fresh._put(_key(body), read_record(body))
        with self._lock:
            self._records, self._jtis = fresh._records, fresh._jtis
            self._by_client, self._watermarks = fresh._by_client, fresh._watermarks

    def apply(self, event_type: str, body: Mapping[str, Any]) -> None:
        key = _key(body)
        with self._lock:
            self._drop(key)
            if event_type != "DELETED":
                self._put(key, read_record(body))

    def learn(self, body: Mapping[str, Any]) -> None:
        """What this replica just wrote, before its watch event: never older than what the
        watch may have delivered meanwhile (a watermark only moves forward)."""
        key, record = _key(body), read_record(body)
        with self._lock:
            known = self._records.get(key)
            if (
                known is not None
                and (known.issued_until or 0) >= (record.issued_until or 0)
                and known.jtis.keys() >= record.jtis.keys()
            ):
                return
            self._drop(key)
            self._put(key, record)

    def _put(self, key: str, record: Record) -> None:
        self._records[key] = record
        for jti, exp in record.jtis.items():
            self._jtis[jti] = self._jtis.get(jti, 0) + 1
            if record.client_id:
                self._by_client.setdefault(record.client_id, {})[jti] = exp
        if record.issued_until is not None:
            self._watermarks[record.client_id] = record

    def _drop(self, key: str) -> None:
        record = self._records.pop(key, None)
        if record is None:
            return
        for jti in record.jtis:
            left = self._jtis.get(jti, 0) - 1
            if left > 0:
                self._jtis[jti] = left
            else:
                self._jtis.pop(jti, None)
            entries = self._by_client.get(record.client_id)
            if entries is not None:
                entries.pop(jti, None)
                if not entries:
                    del self._by_client[record.client_id]
        if record.issued_until is not None:
            self._watermarks.pop(record.client_id, None)

    # --- the request path ------------------------------------------------------------------
    def revokes(self, claims: Mapping[str, Any]) -> bool:
        """Whether a verified token's claims are revoked (its jti, or its client's watermark;
        a token without an integer `iat` counts as issued before any watermark)."""
        if str(claims.get("jti")) in self._jtis:
            return True
        watermark = self._watermarks.get(str(claims.get("client_id")))
        if watermark is None or watermark.issued_until is None:
            return False
        iat = claims.get("iat")
        return not isinstance(iat, int) or iat <= watermark.issued_until

    def covers(self, target: Target) -> bool:
        return self.revokes(
            {"jti": target.jti, "client_id": target.client_id, "iat": target.issued_at}
        )

    def live_entries(self, client_id: str, now: float) -> int:
        with self._lock:
            return sum(1 for exp in self._by_client.get(client_id, {}).values() if exp > now)

    def watermark(self, client_id: str) -> int | None:
        record = self._watermarks.get(client_id)
        return None if record is None else record.issued_until

    def watermark_at(self, client_id: str) -> tuple[int, str] | None:
        """A client's watermark T and the resourceVersion it was seen at, if any."""
        record = self._watermarks.get(client_id)
        return None if record is None else (record.issued_until or 0, record.version)

    def expired(self, now: float) -> tuple[list[int], list[str]]:
        """(GC slots that have passed, legacy buckets that have passed)."""
        with self._lock:
            records = list(self._records.values())
        slots = {r.slot for r in records if r.slot is not None and slot_expired(r.slot, now)}
        return sorted(slots), expired_buckets((r.name for r in records if r.slot is None), now)

    def __len__(self) -> int:
        return len(self._records)


def _raw(call: Callable[..., Any], *args: Any) -> Body:
    """An API call with a plain-dict body, answered as the JSON the API server sent."""
    answer: Body = json.loads(call(*args, _preload_content=False).data)
    return answer


class RevocationUnavailable(Exception):
    """The revocation could not be recorded (API server away or refusing); retry later."""


_API_FAILURES = (ApiException, OSError, urllib3.exceptions.HTTPError, ValueError)


class RevocationStore:
    """Writes revocations (this replica's `index` learns them at once, every other by
    watch) and sweeps what has expired."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        index: RevocationIndex,
        quota: int = DEFAULT_QUOTA,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.index = index
        self.quota = quota

    def plan(self, target: Target, now: float) -> Plan:
        return plan(
            covered=self.index.covers(target),
            live_entries=self.index.live_entries(target.client_id, now),
            quota=self.quota,
        )

    def write(self, target: Target, what: Plan, now: float) -> None:
        """Record the plan (idempotent); RevocationUnavailable when it cannot be."""
        try:
            if what is Plan.ENTRY:
                self._create_entry(target)
            elif what is Plan.WATERMARK:
                self._move_watermark(target, int(now))
        except _API_FAILURES as exc:
            raise RevocationUnavailable(type(exc).__name__) from None

    def _create_entry(self, target: Target) -> None:
        body = entry_body(self.namespace, target)
        try:
            created = _raw(self.core.create_namespaced_config_map, self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:  # 409: this jti is revoked already (another replica)
                raise
            return
        self.index.learn(created)

    def _move_watermark(self, target: Target, until: int) -> None:
        """Set the client's T to `until` unless it is later already; optimistic concurrency
        (a merge patch carrying the resourceVersion it was read at: 409 if it moved since),
        so two replicas never move it backwards. The first attempt uses what the index
        holds (one request); a conflict reads it again."""
        name = watermark_name(target.client_id)
        known = self.index.watermark_at(target.client_id)  # (T, resourceVersion) or None
        for attempt in range(5):
            if attempt or known is None:
                try:
                    current = _raw(self.core.read_namespaced_config_map, name, self.namespace)
                    record = read_record(current)
                    known = (record.issued_until or 0, record.version)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    known = None
            desired = watermark_body(self.namespace, target.client_id, target.client_uid, until)
            try:
                if known is None:
                    written = _raw(self.core.create_namespaced_config_map, self.namespace, desired)
                else:
                    if known[0] >= until:
                        return
                    meta = desired["metadata"]
                    patch = {
                        "metadata": {
                            "resourceVersion": known[1],
                            "labels": meta["labels"],
                            "annotations": meta["annotations"],
                        }
                    }
                    written = _raw(
                        self.core.patch_namespaced_config_map, name, self.namespace, patch
                    )
            except ApiException as exc:
                if exc.status in (404, 409):  # deleted, created or moved meanwhile: re-read
                    continue
                raise
            self.index.learn(written)
            return
        raise RevocationUnavailable("the watermark kept changing")

    def sweep(self, now: float) -> int:
        """Delete what has expired: one deleteCollection per slot; legacy buckets by name.
        Returns how many requests it made."""
        slots, buckets = self.index.expired(now)
        for slot in slots:
            self.core.delete_collection_namespaced_config_map(
                self.namespace, label_selector=f"{SELECTOR},{LABEL_EXPIRES}={slot}"
            )
        for name in buckets:
            try:
                self.core.delete_namespaced_config_map(name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return len(slots) + len(buckets)

    def run_sweeper(self, halt: threading.Event, every: float = 300.0) -> None:
        while not halt.wait(every):
            try:
                self.sweep(time.time())
            except Exception as exc:  # the API may be away; try again next round
                log.warning("sweeping revocations failed: %s", type(exc).__name__)
