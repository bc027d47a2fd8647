"""The Snapshot, kept up to date change by change: what one change costs is what it touches.

Three layers, each recomputed only where something under it changed:

1. Pieces: each object read on its own (`ClientSpec.from_body`, durations, record JSON, CEL
   compilation), once per (uid, resourceVersion) and dropped on delete. An object that does
   not read is skipped and counted in `Snapshot.skipped`; it costs only itself.
2. Joins of one object with one other: a client or account with the verification record
   written for its uid; a SigningKey with the Secret holding its keys.
3. Cross-object decisions, per group: who holds a client id (oldest claimant), which
   namespace owns an audience (its record and every rule's claim), the account indexes,
   each client's CEL sources. A change marks the groups it belongs to (before and after)
   and only those are decided again, with the same functions the operator uses.

`snapshot()` then publishes a new immutable Snapshot: a working mapping that changed is
lent to it as it is and copied before the builder next writes to it (`dict.copy` of 10,000
entries is a memcpy-like ~0.1 ms, no parsing; one copy of each table between updates), the
others are the previous snapshot's very objects, so readers that key on identity
(forward-auth's verified-token cache keys on `Snapshot.keys`) keep what still holds.

Memory (10,000 clients, 500 rules, 1,000 accounts; `make bench-scale`, ~1.5 KB per client by
tracemalloc): what is left per client is its view (ClientView 88 B, its uid 85, client id 71,
name 61, ObjectRef 56; the rest is a ClientProfile shared with clients set up alike), its
record's secret generation (digest 113, Generation 64, datetime 48, tuple 48), the record's
piece (114, kept under the client's own uid string), the table keys and versions (~130), and
a ~21-byte slot in each of the few per-client mappings (tables, client ids, Snapshot.clients).

`build_snapshot` (kubemint.store.snapshot) is this builder fed every object at once, so the
from-scratch and the incremental view are one code path; tests compare them after random
sequences of changes.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from sys import intern
from typing import Any, Generic, TypeVar

from kubemint.api.accessrule import RuleClaim, RuleSpec
from kubemint.api.audiences import FIRST_CLAIM, decide, record_name
from kubemint.api.audiences import decode as decode_audience_record
from kubemint.api.identity import claims_problem
from kubemint.api.meta import (
    KIND_ACCESS_RULE,
    KIND_ACCOUNT,
    KIND_CLIENT,
    KIND_SIGNING_KEY,
    ObjectRef,
    parse_time,
)
from kubemint.api.oauth2client import ClientSpec, claims_client_id, client_id_holder
from kubemint.api.records import ClientRecord, Generation, controller_uid, decode
from kubemint.api.records import record_name as record_secret_name
from kubemint.api.serviceaccount import AccountSpec
from kubemint.api.signingkey import SigningKeySpec
from kubemint.api.trustedissuer import KIND as TRUSTED_ISSUER
from kubemint.api.trustedissuer import TrustedIssuerSpec
from kubemint.crypto.jwks import parse_public_jwks
from kubemint.crypto.jwt import InvalidJWT, prepared_keys
from kubemint.policy.expressions import Condition, ExpressionError, compile_condition
from kubemint.store.informer import Changes, key_of
from kubemint.store.snapshot import (
    AccountView,
    ClientView,
    KeyCache,
    KeyRing,
    RuleView,
    Snapshot,
    TrustedIssuerView,
    keyring,
)

log = logging.getLogger("kubemint.snapshot")
Body = dict[str, Any]
P = TypeVar("P")
K = TypeVar("K")
M = TypeVar("M")
Ref = tuple[str, str]  # (namespace, name)

# The informers' names (kubemint.store.view) are the kinds the builder is fed.
KINDS = (
    "secrets",
    "clients",
    "accounts",
    "rules",
    "audiences",
    "keys",
    "trusted",
    "kubernetes-accounts",
)


_CLIENT_RECORD = record_secret_name(KIND_CLIENT, "")  # the operator's prefix for client records

# -- layer 1: pieces ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry(Generic[P]):
    version: int | str | None  # resourceVersion; None (hand-made bodies): always read again
    piece: P | None  # None: not in the view (skipped, or left out on purpose)


class _Table(Generic[P]):
    """One kind's pieces by informer key, each read once per version."""

    def __init__(
        self,
        kind: str,
        read: Callable[[str, Body], P | None],
        entry: Callable[[int | str | None, P | None], _Entry[P]] = _Entry,
        key: Callable[[str], str] | None = None,
    ) -> None:
        """`entry`: what is kept per object (a piece that carries its own version can be its
        own entry: ~50 bytes less per object). `key`: the table's key for an informer key
        (one that shares a string the view holds anyway, e.g. a uid)."""
        self.kind = kind
        self._read = read
        self._entry = entry
        self._key = key
        self.entries: dict[str, _Entry[P]] = {}
        self.skipped: set[str] = set()

    def piece(self, key: str) -> P | None:
        entry = self.entries.get(key)
        return None if entry is None else entry.piece

    def apply(self, changes: Changes) -> list[tuple[str, P | None, P | None]]:
        """Read what changed: (key, old piece, new piece) of every object read again."""
        bodies = changes.bodies
        if self._key is not None:
            bodies = {self._key(k): b for k, b in bodies.items()}
        keys: Iterable[str] = bodies
        if changes.full:
            keys = list(bodies) + [k for k in self.entries if k not in bodies]
        out: list[tuple[str, P | None, P | None]] = []
        for key in keys:
            body = bodies.get(key)
            entry = self.entries.get(key)
            old = entry.piece if entry is not None else None
            if body is None:
                if entry is not None:
                    del self.entries[key]
                    self.skipped.discard(key)
                    out.append((key, old, None))
                continue
            version = _version(body)
            if entry is not None and version is not None and entry.version == version:
                continue  # the same object as read last time (a relist, or a replayed event)
            self.skipped.discard(key)
            try:
                new = self._read(key, body)
            except Exception as exc:  # one object's content must never fail the whole view
                _skip(self.kind, body, exc)
                self.skipped.add(key)
                new = None
            self.entries[key] = self._entry(version, new)
            out.append((key, old, new))
        return out


def _version(body: Body) -> int | str | None:
    """The resourceVersion: etcd's revision of the write, never the same for two writes (a
    re-created object has a new one too). An int when it reads as one (28 bytes, not ~55)."""
    version = (body.get("metadata") or {}).get("resourceVersion")
    if not version:
        return None
    return int(version) if isinstance(version, str) and version.isdecimal() else str(version)


@dataclass(frozen=True, slots=True)
class _SecretPiece:
    """One Secret of the server namespace. A verification record is kept flattened, as what
    the join reads of it (one object per record, not a record, an owner and a piece: ~100
    bytes less per client); its names are interned, shared with its owner's piece."""

    key: str  # the informer's (the table's own string): orders a uid's records
    version: int | str | None  # resourceVersion (the table's entry is the piece itself)
    # What keyrings read: kept only when a SigningKey may hold it (not a record, or one with a
    # controller); a record is kept as the fields below alone, the only copy of it in memory.
    body: Body | None
    kind: str | None = None  # the record's owner kind; None: not a verification record
    namespace: str = ""  # the record's owner
    name: str = ""
    uid: str = ""
    secrets: tuple[Generation, ...] = ()  # a client's secrets, an account's app passwords
    keys: Mapping[str, Any] | None = None  # a client's jwks, an account's issuer keys

    @property
    def piece(self) -> _SecretPiece:  # as an entry of its table (_secret_entry)
        return self


def _secret_entry(version: int | str | None, piece: _SecretPiece | None) -> _Entry[_SecretPiece]:
    """A Secret's piece is its own entry (one that failed to read has none)."""
    if piece is None:
        return _Entry(version, None)
    return piece  # type: ignore[return-value]  # it has .version and .piece


@dataclass(frozen=True)
class _RulePiece:
    audience: str
    claim: RuleClaim  # counted even when the rule grants nothing (as the operator does)
    view: RuleView | None  # None: releasing, uncompilable or broken `when`
    broken: bool = False  # its `when` failed with something else than ExpressionError


@dataclass(frozen=True)
class _KeyPiece:
    spec: SigningKeySpec
    body: Body


class _Conditions:
    """Compiled `when`s by source, shared by the rules that hold them (counted)."""

    def __init__(self) -> None:
        self._compiled: dict[str, tuple[Condition, int]] = {}

    def acquire(self, source: str) -> Condition:
        found = self._compiled.get(source)
        condition = found[0] if found is not None else compile_condition(source)
        self._compiled[source] = (condition, (found[1] if found is not None else 0) + 1)
        return condition

    def release(self, source: str) -> None:
        condition, holders = self._compiled[source]
        if holders <= 1:
            del self._compiled[source]
        else:
            self._compiled[source] = (condition, holders - 1)


# -- layer 3 helper ----------------------------------------------------------------------------


SMALL_GROUP = 64  # members kept in a tuple up to this many (a set from then on)
_NONE = object()


class _Many(tuple):  # type: ignore[type-arg]  # a group of several members, as a tuple
    """A group's members when they are several (a member may itself be a tuple: a Ref)."""

    __slots__ = ()


class _Groups(Generic[K, M]):
    """Members by group key, and the groups touched since `take()`.

    Most groups have one member (the client holding its id): that member is stored alone (no
    container: 48 bytes less per client than a 1-tuple), a few in a tuple (`_Many`, 560 bytes
    for 64) until the group outgrows SMALL_GROUP, then a set (216 bytes and up; ~4.6 KB for
    65), so a move costs O(1) even in a large group. Read groups with `of()`."""

    def __init__(self) -> None:
        self._members: dict[K, Any] = {}  # a member alone, a _Many or a set of members
        self._dirty: set[K] = set()

    def of(self, key: K) -> tuple[M, ...] | set[M]:
        """The members of group `key` (empty: none)."""
        found = self._members.get(key, _NONE)
        if isinstance(found, _Many | set):
            return found
        return () if found is _NONE else (found,)

    def move(self, member: M, old: Iterable[K], new: Iterable[K]) -> None:
        for key in old:
            found = self.of(key)
            if isinstance(found, set):
                found.discard(member)
                if not found:
                    del self._members[key]
            elif member in found:
                self._store(key, tuple(m for m in found if m != member))
            self._dirty.add(key)
        for key in new:
            found = self.of(key)
            if isinstance(found, set):
                found.add(member)
            elif member not in found:
                grown = (*found, member)
                self._store(key, set(grown) if len(grown) > SMALL_GROUP else grown)
            self._dirty.add(key)

    def _store(self, key: K, members: tuple[M, ...] | set[M]) -> None:
        if not members:
            del self._members[key]
        elif isinstance(members, set):
            self._members[key] = members
        else:
            self._members[key] = members[0] if len(members) == 1 else _Many(members)

    def touch(self, keys: Iterable[K]) -> None:
        self._dirty.update(keys)

    def take(self) -> set[K]:
        dirty, self._dirty = self._dirty, set()
        return dirty


# -- the builder -------------------------------------------------------------------------------


class SnapshotBuilder:
    """Feed it each informer's `Changes` (`apply`), then take a `snapshot()`. Not thread-safe:
    one builder thread owns it; readers only ever see the Snapshots it publishes."""

    def __init__(
        self,
        server_namespace: str,
        audience_ownership: str = FIRST_CLAIM,
        key_cache: KeyCache | None = None,
    ) -> None:
        self.namespace = server_namespace
        self.mode = audience_ownership
        self.key_cache = key_cache if key_cache is not None else KeyCache()
        self._conditions = _Conditions()
        # (namespace, name) of the Kubernetes ServiceAccounts that accounts federate → how many
        # do: only their changes need an update (read by the informer's thread; a dict lookup
        # is atomic under the GIL).
        self.federated: dict[Ref, int] = {}
        self._secrets: _Table[_SecretPiece] = _Table(
            "Secret", _read_secret, _secret_entry, self._secret_key
        )
        self._clients: _Table[ClientView] = _Table(KIND_CLIENT, _body(_read_client))
        self._accounts: _Table[AccountView] = _Table(KIND_ACCOUNT, _body(_read_account))
        self._rules: _Table[_RulePiece] = _Table(KIND_ACCESS_RULE, _body(self._read_rule))
        self._keys: _Table[_KeyPiece] = _Table(KIND_SIGNING_KEY, _body(self._read_key))
        self._trusted = _Table(TRUSTED_ISSUER, _body(self._read_trusted))
        self._audience_records: _Table[Body] = _Table("ConfigMap", lambda _, body: body)
        self._kubernetes: _Table[str] = _Table("ServiceAccount", _body(_read_uid))

        # layer 2 inputs
        # uid → the record Secrets written for it that its uid does not find in the table
        # (see _secret_key: only forged or foreign-named ones, a piece or a tuple by key)
        self._records: dict[str, _SecretPiece | tuple[_SecretPiece, ...]] = {}
        self._secret_bodies: dict[str, Body] = {}  # name → Secret (for keyrings)
        self._dirty_clients: set[str] = set()
        self._dirty_accounts: set[str] = set()
        self._dirty_secret_names: set[str] = set()
        self._keys_dirty = False
        self._trusted_changed = False

        # layer 3
        self._client_ids: _Groups[str, str] = _Groups()  # client id → client keys claiming it
        self._held: dict[str, ClientView] = {}  # Snapshot.clients
        self._client_ids_by_audience: _Groups[str, str] = _Groups()
        self._accounts_view: dict[Ref, AccountView] = {}  # Snapshot.accounts
        self._by_subject: dict[str, AccountView] = {}
        self._by_kubernetes_members: _Groups[Ref, Ref] = _Groups()
        self._by_client_members: _Groups[Ref, Ref] = _Groups()
        self._by_kubernetes: dict[Ref, tuple[AccountView, ...]] = {}
        self._by_client: dict[Ref, tuple[AccountView, ...]] = {}
        self._account_sources: dict[Ref, frozenset[str]] = {}  # client ref → issuer `when`s
        self._audiences: _Groups[str, str] = _Groups()  # audience → rule keys claiming it
        self._record_audiences: dict[str, set[str]] = {}  # record name → audiences
        self._owned: dict[str, tuple[RuleView, ...]] = {}  # Snapshot.rules
        self._audience_sources: dict[str, frozenset[str]] = {}
        self._conditional: dict[str, frozenset[str]] = {}
        self._dirty_conditional: set[str] = set()  # client ids
        self._kubernetes_uids: dict[Ref, str] = {}
        self._dirty_kubernetes: set[Ref] = set()
        self._rings: dict[str, KeyRing] = {}
        self._ring_failures = 0
        self._ring_secrets: set[str] = set()  # Secret names SigningKeys read
        self._trusted_view: dict[str, TrustedIssuerView] = {}
        # Which Snapshot fields changed since the last snapshot()
        self._changed: set[str] = set()
        self._lent: set[str] = set()  # working mappings the published Snapshot holds (_w)
        self._published = Snapshot()
        self._first = True

    # -- feeding --------------------------------------------------------------------------

    def apply(self, kind: str, changes: Changes) -> None:
        """Read the objects of `kind` (an informer's name, see KINDS) that changed."""
        appliers: dict[str, Callable[[Changes], None]] = {
            "secrets": self._apply_secrets,
            "clients": self._apply_clients,
            "accounts": self._apply_accounts,
            "rules": self._apply_rules,
            "audiences": self._apply_audience_records,
            "keys": self._apply_keys,
            "trusted": self._apply_trusted,
            "kubernetes-accounts": self._apply_kubernetes,
        }
        appliers[kind](changes)

    def _apply_secrets(self, changes: Changes) -> None:
        for _, old, new in self._secrets.apply(changes):
            self._secret_changed(old, new)

    def _apply_clients(self, changes: Changes) -> None:
        for key, old, new in self._clients.apply(changes):
            # which client id it claims: derived from its pieces, not kept per client
            self._client_ids.move(
                key, [old.client_id] if old else [], [new.client_id] if new else []
            )
            self._dirty_clients.add(key)

    def _apply_accounts(self, changes: Changes) -> None:
        for key, old, new in self._accounts.apply(changes):
            self._dirty_accounts.add(key)
            self._count_federation(old, -1)
            self._count_federation(new, 1)

    def _apply_rules(self, changes: Changes) -> None:
        for key, old, new in self._rules.apply(changes):
            if old is not None and old.view is not None and old.view.condition is not None:
                self._conditions.release(old.view.condition.source)
            self._audiences.move(key, [old.audience] if old else [], [new.audience] if new else [])

    def _apply_audience_records(self, changes: Changes) -> None:
        for key, _, _ in self._audience_records.apply(changes):
            self._audiences.touch(self._record_audiences.get(key.partition("/")[2], ()))

    def _apply_keys(self, changes: Changes) -> None:
        if self._keys.apply(changes):
            self._keys_dirty = True

    def _apply_trusted(self, changes: Changes) -> None:
        for _, old, new in self._trusted.apply(changes):
            if old is not None and self._trusted_view.get(old.name) is old:
                del self._w("_trusted_view")[old.name]
            if new is not None:
                self._w("_trusted_view")[new.name] = new
            self._trusted_changed = True

    def _apply_kubernetes(self, changes: Changes) -> None:
        for key, _, _ in self._kubernetes.apply(changes):
            namespace, _, name = key.partition("/")
            self._dirty_kubernetes.add((namespace, name))

    def _count_federation(self, account: AccountView | None, by: int) -> None:
        if account is None:
            return
        for name in account.kubernetes:
            ref = (account.ref.namespace, name)
            count = self.federated.get(ref, 0) + by
            if count > 0:
                self.federated[ref] = count
            else:
                self.federated.pop(ref, None)

    def _secret_changed(self, old: _SecretPiece | None, new: _SecretPiece | None) -> None:
        for piece, present in ((old, False), (new, True)):
            if piece is None:
                continue
            if piece.body is not None:  # what keyrings may read (others never hold keys)
                name = piece.body["metadata"]["name"]
                if present:
                    self._secret_bodies[name] = piece.body
                elif self._secret_bodies.get(name) is piece.body:
                    del self._secret_bodies[name]
                self._dirty_secret_names.add(name)
            if piece.kind is None:
                continue
            uid = piece.uid
            if piece.key != uid:  # a record kept at its owner's uid is found there
                found = self._records.get(uid)
                odd = found if isinstance(found, tuple) else (found,) if found else ()
                held = tuple(p for p in odd if p.key != piece.key)
                if present:
                    held = tuple(sorted((*held, piece), key=lambda p: p.key))
                if len(held) > 1:
                    self._records[uid] = held
                elif held:
                    self._records[uid] = held[0]
                else:
                    self._records.pop(uid, None)
            # the owner's informer key: whether its uid matches is for the join to say
            owner = f"{piece.namespace}/{piece.name}"
            if piece.kind == KIND_CLIENT:
                self._dirty_clients.add(owner)
            elif piece.kind == KIND_ACCOUNT:
                self._dirty_accounts.add(owner)

    def _secret_key(self, key: str) -> str:
        """A client's record Secret (`kubemint-client-<uid>`, the operator's name for it) is
        kept under the uid its name holds: the very string its client's view holds (interned),
        so neither a ~130-byte key per client nor a uid → record index is kept. Any other
        Secret keeps its informer key ("namespace/name": never a bare uid, it has a slash)."""
        namespace, _, name = key.partition("/")
        if namespace == self.namespace and name.startswith(_CLIENT_RECORD):
            uid = name[len(_CLIENT_RECORD) :]
            if uid:
                return intern(uid)
        return key

    def _held_records(self, uid: str) -> tuple[_SecretPiece, ...]:
        """The records written for `uid`, by key: the one its uid finds in the table, and any
        kept under another name (_records)."""
        found = self._records.get(uid)
        odd = found if isinstance(found, tuple) else (found,) if found is not None else ()
        at_uid = self._secrets.piece(uid)
        if at_uid is None or at_uid.kind is None or at_uid.uid != uid:
            return odd
        return tuple(sorted((at_uid, *odd), key=lambda p: p.key)) if odd else (at_uid,)

    def _record(self, uid: str, kind: str, ref: Ref) -> _SecretPiece | None:
        """The record written for exactly this object: same uid, namespace, name and kind."""
        held = self._held_records(uid)
        if not held:
            return None
        record = held[0]  # one per owner uid; the first name only to be deterministic
        return record if (record.kind, record.namespace, record.name) == (kind, *ref) else None

    # -- reading (layer 1, the parts that need the builder's state) -----------------------

    def _read_rule(self, body: Body) -> _RulePiece | None:
        spec = RuleSpec.from_body(body)
        if not spec.audience:
            return None
        claim = spec.claim(parse_time(body["metadata"]["creationTimestamp"]))
        try:
            condition = self._conditions.acquire(spec.when) if spec.when else None
        except ExpressionError:
            return _RulePiece(spec.audience, claim, None)  # grants nothing; the operator says why
        except Exception as exc:  # one object's content must never fail the whole view
            _skip(KIND_ACCESS_RULE, body, exc)
            return _RulePiece(spec.audience, claim, None, broken=True)
        if spec.releasing:
            if condition is not None:
                self._conditions.release(condition.source)
            return _RulePiece(spec.audience, claim, None)
        view = RuleView(
            ref=spec.ref,
            audience=spec.audience,
            subjects=frozenset(spec.subjects),
            scopes=spec.scopes,
            condition=condition,
            http=spec.http,
            account_claims=spec.account_claims,
        )
        return _RulePiece(spec.audience, claim, view)

    def _read_key(self, body: Body) -> _KeyPiece | None:
        if _namespace(body) != self.namespace:
            return None
        return _KeyPiece(SigningKeySpec.from_body(body), body)

    def _read_trusted(self, body: Body) -> TrustedIssuerView | None:
        """From the server namespace only: a TrustedIssuer anywhere else is a tenant's and
        trusts nothing (the operator reports it WrongNamespace)."""
        spec = TrustedIssuerSpec.from_body(body)
        if spec.namespace != self.namespace:
            return None
        keys = (
            prepared_keys(parse_public_jwks(spec.jwks, "spec.jwks"))
            if spec.jwks is not None
            else None
        )
        return TrustedIssuerView(spec.name, spec.issuer, spec.jwks_uri, keys)

    # -- publishing (layers 2 and 3) ------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The view now. Costs what changed since the previous call."""
        self._join_clients()
        self._decide_client_ids()
        self._join_accounts()
        self._decide_audiences()
        self._decide_conditional()
        self._update_keyrings()
        self._update_kubernetes_uids()
        if self._trusted_changed:
            self._changed.add("trusted_issuers")
            self._trusted_changed = False
        return self._publish()

    def _join_clients(self) -> None:
        for key in self._dirty_clients:
            entry = self._clients.entries.get(key)
            if entry is not None and entry.piece is not None:
                view = entry.piece
                record = self._record(view.uid, KIND_CLIENT, (view.ref.namespace, view.ref.name))
                secrets = record.secrets if record else ()
                jwks = record.keys if record else None
                if view.secrets != secrets or view.jwks != jwks:  # joined in place
                    entry.piece = replace(view, secrets=secrets, jwks=jwks)
                # its claim on its client id is moved when it is read (_apply_clients)
                self._client_ids.touch((view.client_id,))
        self._dirty_clients.clear()

    def _decide_client_ids(self) -> None:
        for client_id in self._client_ids.take():
            new = self._holder(self._client_ids.of(client_id))
            old = self._held.get(client_id)
            if new is old or (new is not None and new == old):
                continue  # e.g. only its status changed: keep the published object
            self._changed.add("clients")
            self._dirty_conditional.add(client_id)
            if old is not None:
                del self._w("_held")[client_id]
                self._client_ids_by_audience.move(client_id, old.audiences, ())
            if new is not None:
                self._w("_held")[client_id] = new
                self._client_ids_by_audience.move(client_id, (), new.audiences)
        self._client_ids_by_audience.take()  # only membership is used

    def _holder(self, members: Iterable[str]) -> ClientView | None:
        pieces = [p for k in members if (p := self._clients.piece(k)) is not None]
        if len(pieces) == 1:  # the usual case: one claimant holds its id
            return pieces[0]
        holder, _ = client_id_holder((p.created, p.ref.namespace, p.ref.name) for p in pieces)
        if holder is None:
            return None
        return next(
            p for p in pieces if (p.ref.namespace, p.ref.name) == (holder.namespace, holder.name)
        )

    def _join_accounts(self) -> None:
        dirty_refs: set[Ref] = set()
        for key in self._dirty_accounts:
            namespace, _, name = key.partition("/")
            ref = (namespace, name)
            old = self._accounts_view.get(ref)
            piece = self._accounts.piece(key)
            new = None
            if piece is not None:
                record = self._record(piece.uid, KIND_ACCOUNT, ref)
                new = replace(
                    piece,
                    passwords=record.secrets if record else (),
                    issuer_keys=(record.keys or {}) if record else {},
                )
            if new == old:  # also both None; or e.g. only its status changed
                continue
            self._changed.update(("accounts", "accounts_by_subject"))
            if old is not None:
                del self._w("_accounts_view")[ref]
                self._w("_by_subject").pop(old.subject, None)
            if new is not None:
                self._w("_accounts_view")[ref] = new
                self._w("_by_subject")[new.subject] = new
            self._by_kubernetes_members.move(
                ref,
                [(namespace, sa) for sa in old.kubernetes] if old else [],
                [(namespace, sa) for sa in new.kubernetes] if new else [],
            )
            self._by_client_members.move(
                ref,
                [(namespace, c) for c in old.clients] if old else [],
                [(namespace, c) for c in new.clients] if new else [],
            )
            dirty_refs.add(ref)
        self._dirty_accounts.clear()
        for sa in self._by_kubernetes_members.take():
            self._changed.add("accounts_by_kubernetes")
            self._dirty_kubernetes.add(sa)
            self._set(
                self._w("_by_kubernetes"), sa, self._accounts_of(self._by_kubernetes_members, sa)
            )
        for client in self._by_client_members.take():
            self._changed.add("accounts_by_client")
            views = self._accounts_of(self._by_client_members, client)
            self._set(self._w("_by_client"), client, views)
            sources = frozenset(
                {i.when for a in views or () for i in a.issuers if i.when}
                | {t.when for a in views or () for t in a.trusted_issuers if t.when}
            )
            if sources != self._account_sources.get(client, frozenset()):
                self._set(self._account_sources, client, sources or None)
            held = self._held_client_id(client)
            if held is not None:
                self._dirty_conditional.add(held)

    def _held_client_id(self, ref: Ref) -> str | None:
        """The client id the client `ref` holds, if it holds one (derived, not indexed: an
        index would cost ~85 bytes per client for a question only account changes ask)."""
        piece = self._clients.piece(f"{ref[0]}/{ref[1]}")
        if piece is None:
            return None
        held = self._held.get(piece.client_id)
        return piece.client_id if held is not None and held.ref == piece.ref else None

    def _accounts_of(self, groups: _Groups[Ref, Ref], key: Ref) -> tuple[AccountView, ...] | None:
        refs = sorted(groups.of(key))
        return tuple(self._accounts_view[r] for r in refs) or None

    def _decide_audiences(self) -> None:
        for audience in self._audiences.take():
            members = self._audiences.of(audience)
            name = record_name(audience)
            if members:
                self._record_audiences.setdefault(name, set()).add(audience)
            else:
                found = self._record_audiences.get(name)
                if found is not None:
                    found.discard(audience)
                    if not found:
                        del self._record_audiences[name]
            pieces = sorted(
                (p for k in members or () if (p := self._rules.piece(k)) is not None),
                key=lambda p: (p.claim.namespace, p.claim.name),
            )
            views = [p.view for p in pieces if p.view is not None]
            owned: tuple[RuleView, ...] | None = None
            if views:
                body = self._audience_records.piece(f"{self.namespace}/{name}")
                record = None if body is None else decode_audience_record(body, audience)
                owner = decide(audience, self.mode, record, [p.claim for p in pieces]).owner
                owned = tuple(r for r in views if r.ref.namespace == owner)
            if owned != self._owned.get(audience):
                self._changed.add("rules")
                self._set(self._w("_owned"), audience, owned)
            sources = frozenset(r.condition.source for r in owned or () if r.condition)
            if sources != self._audience_sources.get(audience, frozenset()):
                self._set(self._audience_sources, audience, sources or None)
                self._dirty_conditional.update(self._client_ids_by_audience.of(audience))

    def _decide_conditional(self) -> None:
        for client_id in self._dirty_conditional:
            client = self._held.get(client_id)
            value: frozenset[str] | None = None
            if client is not None:
                parts = [
                    found
                    for audience in client.audiences
                    if (found := self._audience_sources.get(audience)) is not None
                ]
                accounts = self._account_sources.get((client.ref.namespace, client.ref.name))
                if accounts is not None:
                    parts.append(accounts)
                if parts:
                    value = parts[0] if len(parts) == 1 else frozenset().union(*parts)
            if value != self._conditional.get(client_id):
                self._changed.add("conditional_clients")
                self._set(self._w("_conditional"), client_id, value)
        self._dirty_conditional.clear()

    def _update_keyrings(self) -> None:
        touched = self._keys_dirty or not self._dirty_secret_names.isdisjoint(self._ring_secrets)
        self._dirty_secret_names.clear()
        if not touched:
            return
        self._keys_dirty = False
        rings: dict[str, KeyRing] = {}
        failures = 0
        referenced: set[str] = set()
        for entry in self._keys.entries.values():
            piece = entry.piece
            if piece is None:
                continue
            referenced.add(piece.spec.secret_name)
            try:
                ring = keyring(piece.spec, piece.body, self._secret_bodies, self.key_cache)
            except Exception as exc:  # one object's content must never fail the whole view
                _skip(KIND_SIGNING_KEY, piece.body, exc)
                failures += 1
                continue
            if ring is not None:
                rings[ring.name] = ring
        self._ring_secrets = referenced
        if failures != self._ring_failures:
            self._ring_failures = failures
            self._changed.add("skipped")
        if rings != self._rings:
            self._rings = rings
            self._lent.discard("_rings")  # a new mapping: nothing to copy
            self._changed.add("keys")

    def _update_kubernetes_uids(self) -> None:
        for ref in self._dirty_kubernetes:
            uid = self._kubernetes.piece(f"{ref[0]}/{ref[1]}")
            value = uid if uid and ref in self._by_kubernetes else None
            if value != self._kubernetes_uids.get(ref):
                self._changed.add("kubernetes_accounts")
                self._set(self._w("_kubernetes_uids"), ref, value)
        self._dirty_kubernetes.clear()

    def _skipped(self) -> dict[str, int]:
        counts = {
            table.kind: len(table.skipped)
            for table in (self._clients, self._accounts, self._rules, self._keys, self._trusted)
        }
        counts[KIND_ACCESS_RULE] += sum(
            1 for e in self._rules.entries.values() if e.piece is not None and e.piece.broken
        )
        counts[KIND_SIGNING_KEY] += self._ring_failures
        return {kind: n for kind, n in counts.items() if n}

    def _publish(self) -> Snapshot:
        changed, self._changed = self._changed, set()
        if self._first:
            changed = set(_FIELDS) | {"skipped"}
            self._first = False
        prev = self._published
        fields: dict[str, Any] = {}
        for name, source in _FIELDS.items():
            if name in changed:  # lent to the snapshot as it is: copied before the next write
                fields[name] = getattr(self, source)
                self._lent.add(source)
            else:
                fields[name] = getattr(prev, name)
        skipped = self._skipped()
        fields["skipped"] = skipped if skipped != prev.skipped else prev.skipped
        # signature_keys() prefers verification_keys: none until derived from the new keys
        fields["verification_keys"] = None if "keys" in changed else prev.verification_keys
        snapshot = Snapshot(**fields)
        if "keys" in changed:
            public = snapshot.signature_keys()
            verification = None
            if public:
                try:
                    verification = prepared_keys(public)
                except InvalidJWT:
                    log.warning("published keys could not be parsed for introspection")
            snapshot = replace(snapshot, verification_keys=verification)
        self._published = snapshot
        return snapshot

    def _w(self, source: str) -> dict[Any, Any]:
        """The working mapping `source` (see _FIELDS), to write to: a published Snapshot holds
        the one it was lent, so that is copied first (one copy per mapping and update, as
        publishing used to make; between updates one copy of each table, not two)."""
        if source in self._lent:
            self._lent.discard(source)
            # .copy(), not dict(): after a delete dict() re-inserts every entry (~10x slower,
            # ~7 ms for 10,000 clients, with the GIL held), .copy() clones the table
            setattr(self, source, getattr(self, source).copy())
        found: dict[Any, Any] = getattr(self, source)
        return found

    @staticmethod
    def _set(target: dict[Any, Any], key: Any, value: Any) -> None:
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value


# Snapshot field → the builder's working mapping it is a copy of.
_FIELDS = {
    "clients": "_held",
    "accounts": "_accounts_view",
    "accounts_by_kubernetes": "_by_kubernetes",
    "accounts_by_client": "_by_client",
    "rules": "_owned",
    "keys": "_rings",
    "accounts_by_subject": "_by_subject",
    "kubernetes_accounts": "_kubernetes_uids",
    "trusted_issuers": "_trusted_view",
    "conditional_clients": "_conditional",
}


def _body(read: Callable[[Body], P | None]) -> Callable[[str, Body], P | None]:
    return lambda _, body: read(body)


def _read_secret(key: str, body: Body) -> _SecretPiece:
    """Verification records by the uid of the object they were written for (read from the
    record itself, named after that uid; labels only select Secrets, they decide nothing)."""
    try:
        record = decode(body)
    except Exception:  # not a verification record (keys, or unreadable): never trusted
        return _SecretPiece(key, _version(body), body)
    owner = record.owner
    if isinstance(record, ClientRecord):
        secrets, keys = record.secrets, record.jwks
    else:
        secrets, keys = record.passwords, record.issuer_keys or {}
    return _SecretPiece(
        key,
        _version(body),
        body if controller_uid(body) is not None else None,
        intern(owner.kind),
        intern(owner.namespace),
        intern(owner.name),
        intern(owner.uid),
        secrets,
        keys,
    )


Names = frozenset[str]
_NO_NAMES: Names = frozenset()
_SHARED: weakref.WeakValueDictionary[Names, Names] = weakref.WeakValueDictionary()


def _shared(values: frozenset[str]) -> frozenset[str]:
    """One object for equal sets (grant types, scopes): most clients have the same few."""
    return _SHARED.setdefault(values, values)


def _read_client(body: Body) -> ClientView | None:
    spec = ClientSpec.from_body(body)
    if not claims_client_id(spec.namespace, body.get("spec") or {}):
        # spec.clientId outside its namespace (an older CRD admitted it): it could pose as
        # another namespace's client or a ServiceAccount's subject.
        log.warning("skipping OAuth2Client %s: spec.clientId", _name(body))
        return None
    # Strings interned: many clients share them (namespace, audiences, method), and the
    # record written for the client shares the rest (uid, name, client id). What it shares
    # with clients set up like it is one ClientProfile.
    return ClientView.make(
        uid=intern(str(body["metadata"].get("uid", ""))),
        ref=ObjectRef(KIND_CLIENT, intern(spec.namespace), intern(spec.name)),
        client_id=intern(spec.client_id),
        disabled=spec.disabled,
        grant_types=_shared(frozenset(map(intern, spec.grant_types))),
        auth_method=intern(spec.auth_method),
        scopes=_shared(frozenset(map(intern, spec.scopes))),
        audiences=tuple(map(intern, spec.audiences)),
        token_lifetime=int(spec.token_lifetime.total_seconds()),
        token_format=intern(spec.token_format),
        signing_key=intern(spec.signing_key),
        encryption_key=spec.encryption_key,
        created=intern(str(body["metadata"].get("creationTimestamp", ""))),
    )


def _read_account(body: Body) -> AccountView | None:
    spec = AccountSpec.from_body(body)
    if claims_problem(spec.claims):
        # A claim no account may set (an older CRD admitted it): the operator reports
        # ForbiddenClaims; nothing authenticates as the account until it is fixed.
        log.warning("skipping ServiceAccount %s: spec.claims", _name(body))
        return None
    return AccountView(
        uid=intern(str(body["metadata"].get("uid", ""))),
        ref=ObjectRef(KIND_ACCOUNT, intern(spec.namespace), spec.name),
        subject=intern(spec.subject),
        disabled=spec.disabled,
        clients=frozenset(spec.clients),
        passwords=(),
        kubernetes=frozenset(spec.kubernetes) if spec.kubernetes else _NO_NAMES,
        issuers=spec.issuers,
        issuer_keys={},
        claims=spec.claims,
        trusted_issuers=spec.trusted_issuers,
        created=intern(str(body["metadata"].get("creationTimestamp") or "")),
    )


def _read_uid(body: Body) -> str | None:
    return (body.get("metadata") or {}).get("uid") or None


def _skip(kind: str, body: Body, exc: BaseException) -> None:
    """Leave one object out of the view: the type of error only, never its value (it may
    be anything a tenant wrote)."""
    log.warning("skipping %s %s: %s", kind, _name(body), type(exc).__name__)


def _namespace(body: Body) -> str | None:
    return (body.get("metadata") or {}).get("namespace")


def _name(body: Body) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def full_changes(bodies: Iterable[Body]) -> Changes:
    """Every object of one kind, as a relist reports them."""
    return Changes(True, {key_of(b): b for b in bodies})
