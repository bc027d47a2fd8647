"""An immutable view of everything the token server decides with, built from raw objects.

Built by a pure function from the informers' objects, so tests pass in hand-made objects.
Ownership questions are re-derived here with the operator's own functions (oldest client
keeps a client id, oldest rule's namespace owns an audience) rather than trusted from status,
so a rule that grabs an owned audience grants nothing even before the operator reacts.

Every object is read on its own: whatever one of them holds (a value admission let through,
an object stored before a bound existed) makes that object skipped and counted, never the
whole build fail, so no tenant can freeze the view for the others.
"""

from __future__ import annotations

import datetime
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from kubemint.api.accessrule import HttpRule, RuleClaim, RuleSpec
from kubemint.api.audiences import FIRST_CLAIM, decide, record_name
from kubemint.api.audiences import by_name as audience_records_by_name
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
from kubemint.api.records import (
    AccountRecord,
    ClientRecord,
    Generation,
    RecordError,
    StoredKey,
    controller_uid,
    decode,
    decode_keys,
)
from kubemint.api.serviceaccount import (
    DEFAULT_JWKS_URIS_PER_NAMESPACE,
    AccountSpec,
    IssuerSpec,
    admitted_jwks_uris,
)
from kubemint.api.signingkey import SigningKeySpec
from kubemint.api.trustedissuer import KIND as TRUSTED_ISSUER
from kubemint.api.trustedissuer import TrustedIssuerRef, TrustedIssuerSpec
from kubemint.crypto.jwks import parse_public_jwks
from kubemint.crypto.jwt import (
    Decrypter,
    Encrypter,
    InvalidJWT,
    PreparedKeys,
    Signer,
    prepared_keys,
)
from kubemint.crypto.keys import KeyMaterial
from kubemint.crypto.opaque import OpaqueKey
from kubemint.policy.expressions import Condition, ExpressionError, compile_condition

log = logging.getLogger("kubemint.snapshot")
Body = dict[str, Any]


@dataclass(frozen=True)
class ClientView:
    ref: ObjectRef
    client_id: str
    disabled: bool
    grant_types: frozenset[str]
    auth_method: str
    scopes: frozenset[str]
    audiences: tuple[str, ...]
    token_lifetime: int
    token_format: str
    signing_key: str
    encryption_key: str | None
    secrets: tuple[Generation, ...] = ()
    jwks: Mapping[str, Any] | None = None
    uid: str = ""  # this object's, so a re-created client of the same name is told apart

    def secret_digests(self, now: datetime.datetime) -> list[str]:
        """Digests of the secrets that verify at `now` (current + overlapping previous)."""
        return [g.sha256 for g in self.secrets if g.not_after is None or g.not_after > now]

    def hmac_keys(self, now: datetime.datetime) -> list[str]:
        return [
            g.hmac_key
            for g in self.secrets
            if g.hmac_key and (g.not_after is None or g.not_after > now)
        ]


@dataclass(frozen=True)
class AccountView:
    ref: ObjectRef
    subject: str
    disabled: bool
    clients: frozenset[str]
    passwords: tuple[Generation, ...]
    kubernetes: frozenset[str]
    issuers: tuple[IssuerSpec, ...]
    issuer_keys: Mapping[str, Any]
    claims: Mapping[str, Any]
    uid: str = ""  # this object's, so a re-created account of the same name is told apart
    trusted_issuers: tuple[TrustedIssuerRef, ...] = ()
    created: str = ""  # creationTimestamp: older accounts' jwksUris come first in the quota

    def password_digests(self, now: datetime.datetime) -> list[str]:
        return [g.sha256 for g in self.passwords if g.not_after is None or g.not_after > now]


@dataclass(frozen=True)
class TrustedIssuerView:
    """A TrustedIssuer from the server namespace: its `iss` and where its keys come from."""

    name: str
    issuer: str
    jwks_uri: str | None
    keys: PreparedKeys | None  # spec.jwks: public keys only, checked and parsed once


@dataclass(frozen=True)
class RuleView:
    ref: ObjectRef
    audience: str
    subjects: frozenset[ObjectRef]
    scopes: frozenset[str]
    condition: Condition | None
    http: tuple[HttpRule, ...]  # spec.http, for the forward-auth endpoints
    account_claims: frozenset[str] = frozenset()  # spec.accountClaims


@dataclass(frozen=True)
class KeyRing:
    """One SigningKey: the key that signs (or encrypts) now, and every public key verifiers
    may meet; plus what the server needs to read its own opaque and encrypted tokens."""

    name: str
    algorithm: str
    use: str
    signer: Signer | None  # None for encryption keys
    public_keys: tuple[Mapping[str, Any], ...]
    pre_publish: datetime.timedelta
    active_kid: str = ""
    opaque: Mapping[str, OpaqueKey] = field(default_factory=dict)  # kid → key (sig keys)
    encrypter: Encrypter | None = None  # enc keys: the active public key
    decrypters: Mapping[str, Decrypter] = field(default_factory=dict)  # kid → (enc keys)


@dataclass(frozen=True)
class Snapshot:
    clients: Mapping[str, ClientView] = field(default_factory=dict)
    accounts: Mapping[tuple[str, str], AccountView] = field(default_factory=dict)
    accounts_by_kubernetes: Mapping[tuple[str, str], tuple[AccountView, ...]] = field(
        default_factory=dict
    )
    accounts_by_client: Mapping[tuple[str, str], tuple[AccountView, ...]] = field(
        default_factory=dict
    )
    rules: Mapping[str, tuple[RuleView, ...]] = field(default_factory=dict)  # by audience
    keys: Mapping[str, KeyRing] = field(default_factory=dict)
    # The kubemint ServiceAccount whose tokens carry a `sub` (see kubemint.oauth.provenance).
    accounts_by_subject: Mapping[str, AccountView] = field(default_factory=dict)
    # (namespace, name) → uid of the live Kubernetes ServiceAccounts that some account's
    # spec.federation.kubernetes names; a projected token of any other is refused.
    kubernetes_accounts: Mapping[tuple[str, str], str] = field(default_factory=dict)
    trusted_issuers: Mapping[str, TrustedIssuerView] = field(default_factory=dict)  # by name
    verification_keys: PreparedKeys | None = None  # parsed once: introspection verifies with it
    skipped: Mapping[str, int] = field(default_factory=dict)  # kind → objects left out
    # Client id → the CEL conditions its requests may evaluate (AccessRule `when`s on its
    # audiences, issuer `when`s of accounts using it): the server decides with these whether
    # a request waits for the condition sandbox off its event loop.
    conditional_clients: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def opaque_key(self, kid: str) -> OpaqueKey | None:
        return next((r.opaque[kid] for r in self.keys.values() if kid in r.opaque), None)

    def decrypter(self, kid: str) -> Decrypter | None:
        return next((r.decrypters[kid] for r in self.keys.values() if kid in r.decrypters), None)

    def signature_keys(self) -> PreparedKeys | list[Mapping[str, Any]]:
        """Public keys that verify kubemint's own signatures (introspection)."""
        if self.verification_keys is not None:
            return self.verification_keys
        return [k for r in self.keys.values() if r.use == "sig" for k in r.public_keys]

    def jwks_uris(self, per_namespace: int = DEFAULT_JWKS_URIS_PER_NAMESPACE) -> set[str]:
        """The jwksUris the token server must keep fetching: TrustedIssuers' (an admin's), and
        of each namespace's accounts at most `per_namespace` distinct ones (see
        `admitted_jwks_uris`; the operator reports the others on their accounts)."""
        by_namespace: dict[str, list[tuple[str, str, list[str | None]]]] = {}
        for account in self.accounts.values():
            uris = [i.jwks_uri for i in account.issuers]
            if any(uris):
                by_namespace.setdefault(account.ref.namespace, []).append(
                    (account.created, account.ref.name, uris)
                )
        admitted = {t.jwks_uri for t in self.trusted_issuers.values() if t.jwks_uri}
        for accounts in by_namespace.values():
            admitted |= admitted_jwks_uris(accounts, per_namespace)
        return admitted

    def jwks(self) -> dict[str, Any]:
        """Every public signing and encryption key (active, next and retired)."""
        return {"keys": [dict(k) for ring in self.keys.values() for k in ring.public_keys]}


@dataclass
class KeyCache:
    """Parsed keys by kid, kept across rebuilds: parsing PEM is the costly part of a rebuild."""

    signers: dict[str, Signer] = field(default_factory=dict)
    public: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    opaque: dict[str, OpaqueKey] = field(default_factory=dict)
    encrypters: dict[str, Encrypter] = field(default_factory=dict)
    decrypters: dict[str, Decrypter] = field(default_factory=dict)


def build_snapshot(
    *,
    server_namespace: str,
    clients: Iterable[Body],
    accounts: Iterable[Body],
    rules: Iterable[Body],
    signing_keys: Iterable[Body],
    secrets: Iterable[Body],
    key_cache: KeyCache | None = None,
    kubernetes_accounts: Iterable[Body] = (),
    audience_records: Iterable[Body] = (),
    audience_ownership: str = FIRST_CLAIM,
    trusted_issuers: Iterable[Body] = (),
) -> Snapshot:
    """The view at one moment. Objects that do not parse are skipped (and logged).

    `kubernetes_accounts` are Kubernetes ServiceAccounts (metadata is enough); only those that
    an account federates are kept. `audience_records` are the audience ownership ConfigMaps
    of the server namespace (kubemint.api.audiences); `audience_ownership` is the mode the
    operator runs in."""
    secrets = list(secrets)
    records = _records(secrets)
    skipped: Counter[str] = Counter()
    client_views = _clients(clients, records, skipped)
    account_views = _accounts(accounts, records, skipped)
    rule_views = _rules(
        rules, audience_records_by_name(audience_records), audience_ownership, skipped
    )
    snapshot = Snapshot(
        clients=client_views,
        **account_views,
        rules=rule_views,
        keys=_keyrings(
            [k for k in signing_keys if _namespace(k) == server_namespace],
            {s["metadata"]["name"]: s for s in secrets},
            key_cache if key_cache is not None else KeyCache(),
            skipped,
        ),
        trusted_issuers=_trusted_issuers(trusted_issuers, server_namespace, skipped),
        skipped=dict(skipped),
        conditional_clients=_conditional_clients(
            client_views, account_views["accounts"], rule_views
        ),
    )
    snapshot = replace(
        snapshot,
        accounts_by_subject={a.subject: a for a in snapshot.accounts.values()},
        kubernetes_accounts=_kubernetes_uids(
            kubernetes_accounts, snapshot.accounts_by_kubernetes.keys()
        ),
    )
    public = snapshot.signature_keys()
    if public:
        try:
            snapshot = replace(snapshot, verification_keys=prepared_keys(public))
        except InvalidJWT:
            log.warning("published keys could not be parsed for introspection")
    return snapshot


def _kubernetes_uids(
    bodies: Iterable[Body], federated: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """(namespace, name) → uid of the Kubernetes ServiceAccounts that accounts federate."""
    wanted = set(federated)
    uids: dict[tuple[str, str], str] = {}
    for body in bodies:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if key in wanted and meta.get("uid"):
            uids[key] = meta["uid"]
    return uids


def _trusted_issuers(
    bodies: Iterable[Body], server_namespace: str, skipped: Counter[str]
) -> dict[str, TrustedIssuerView]:
    """TrustedIssuers by name, from the server namespace only: one anywhere else is a
    tenant's and trusts nothing (the operator reports it WrongNamespace)."""
    views: dict[str, TrustedIssuerView] = {}
    for body in bodies:
        try:
            spec = TrustedIssuerSpec.from_body(body)
            if spec.namespace != server_namespace:
                continue
            keys = (
                prepared_keys(parse_public_jwks(spec.jwks, "spec.jwks"))
                if spec.jwks is not None
                else None
            )
        except Exception as exc:  # one object's content must never fail the whole view
            _skip(TRUSTED_ISSUER, body, exc, skipped)
            continue
        views[spec.name] = TrustedIssuerView(spec.name, spec.issuer, spec.jwks_uri, keys)
    return views


Records = Mapping[str, ClientRecord | AccountRecord]  # owner uid → its verification record


def _records(secrets: Iterable[Body]) -> dict[str, ClientRecord | AccountRecord]:
    """Verification records by the uid of the object they were written for (read from the
    record itself, named after that uid; labels only select Secrets, they decide nothing)."""
    out: dict[str, ClientRecord | AccountRecord] = {}
    for secret in secrets:
        try:
            record = decode(secret)
        except RecordError:
            continue  # not a verification record (keys, or unreadable): never trusted
        out[record.owner.uid] = record
    return out


def _record_of(body: Body, kind: str, records: Records) -> ClientRecord | AccountRecord | None:
    """The record written for exactly this object: same uid, namespace, name and kind."""
    meta = body["metadata"]
    record = records.get(meta.get("uid", ""))
    if record is None:
        return None
    owner = record.owner
    if (owner.kind, owner.namespace, owner.name) != (kind, meta["namespace"], meta["name"]):
        return None
    return record


def _conditional_clients(
    clients: Mapping[str, ClientView],
    accounts: Mapping[tuple[str, str], AccountView],
    rules: Mapping[str, tuple[RuleView, ...]],
) -> dict[str, frozenset[str]]:
    by_audience = {
        audience: {r.condition.source for r in owned if r.condition}
        for audience, owned in rules.items()
    }
    by_client: dict[tuple[str, str], set[str]] = {}
    for account in accounts.values():
        sources = {i.when for i in account.issuers if i.when}
        sources |= {t.when for t in account.trusted_issuers if t.when}
        for name in account.clients if sources else ():
            by_client.setdefault((account.ref.namespace, name), set()).update(sources)
    out: dict[str, frozenset[str]] = {}
    for client_id, client in clients.items():
        sources = set(by_client.get((client.ref.namespace, client.ref.name), ()))
        for audience in client.audiences:
            sources |= by_audience.get(audience, set())
        if sources:
            out[client_id] = frozenset(sources)
    return out


def _skip(kind: str, body: Body, exc: BaseException, skipped: Counter[str]) -> None:
    """Leave one object out of the view: the type of error only, never its value (it may
    be anything a tenant wrote)."""
    skipped[kind] += 1
    log.warning("skipping %s %s: %s", kind, _name(body), type(exc).__name__)


def _clients(
    bodies: Iterable[Body], records: Records, skipped: Counter[str]
) -> dict[str, ClientView]:
    claims: dict[str, list[tuple[str, ClientView]]] = {}
    for body in bodies:
        try:
            spec = ClientSpec.from_body(body)
            if not claims_client_id(spec.namespace, body.get("spec") or {}):
                # spec.clientId outside its namespace (an older CRD admitted it): it could
                # pose as another namespace's client or a ServiceAccount's subject.
                log.warning("skipping OAuth2Client %s: spec.clientId", _name(body))
                continue
            record = _record_of(body, KIND_CLIENT, records)
            view = ClientView(
                uid=body["metadata"].get("uid", ""),
                ref=spec.ref,
                client_id=spec.client_id,
                disabled=spec.disabled,
                grant_types=frozenset(spec.grant_types),
                auth_method=spec.auth_method,
                scopes=spec.scopes,
                audiences=spec.audiences,
                token_lifetime=int(spec.token_lifetime.total_seconds()),
                token_format=spec.token_format,
                signing_key=spec.signing_key,
                encryption_key=spec.encryption_key,
                secrets=record.secrets if isinstance(record, ClientRecord) else (),
                jwks=record.jwks if isinstance(record, ClientRecord) else None,
            )
            created = body["metadata"].get("creationTimestamp", "")
        except Exception as exc:  # one object's content must never fail the whole view
            _skip(KIND_CLIENT, body, exc, skipped)
            continue
        claims.setdefault(view.client_id, []).append((created, view))
    # The oldest claimant keeps a client id; same-second claimants are contested and nobody
    # authenticates as it (as the operator decides, with the same function).
    held: dict[str, ClientView] = {}
    for client_id, candidates in claims.items():
        by_ref = {(v.ref.namespace, v.ref.name): v for _, v in candidates}
        holder, _ = client_id_holder((c, v.ref.namespace, v.ref.name) for c, v in candidates)
        if holder is not None:
            held[client_id] = by_ref[(holder.namespace, holder.name)]
    return held


def _accounts(bodies: Iterable[Body], records: Records, skipped: Counter[str]) -> dict[str, Any]:
    accounts: dict[tuple[str, str], AccountView] = {}
    by_kubernetes: dict[tuple[str, str], list[AccountView]] = {}
    by_client: dict[tuple[str, str], list[AccountView]] = {}
    for body in bodies:
        try:
            spec = AccountSpec.from_body(body)
            if claims_problem(spec.claims):
                # A claim no account may set (an older CRD admitted it): the operator reports
                # ForbiddenClaims; nothing authenticates as the account until it is fixed.
                log.warning("skipping ServiceAccount %s: spec.claims", _name(body))
                continue
            record = _record_of(body, KIND_ACCOUNT, records)
            stored = record if isinstance(record, AccountRecord) else None
            view = AccountView(
                uid=body["metadata"].get("uid", ""),
                ref=spec.ref,
                subject=spec.subject,
                disabled=spec.disabled,
                clients=frozenset(spec.clients),
                passwords=stored.passwords if stored else (),
                kubernetes=frozenset(spec.kubernetes),
                issuers=spec.issuers,
                issuer_keys=(stored.issuer_keys or {}) if stored else {},
                claims=spec.claims,
                trusted_issuers=spec.trusted_issuers,
                created=str(body["metadata"].get("creationTimestamp") or ""),
            )
        except Exception as exc:  # one object's content must never fail the whole view
            _skip(KIND_ACCOUNT, body, exc, skipped)
            continue
        accounts[(spec.namespace, spec.name)] = view
        for sa in spec.kubernetes:
            by_kubernetes.setdefault((spec.namespace, sa), []).append(view)
        for client_name in spec.clients:
            by_client.setdefault((spec.namespace, client_name), []).append(view)
    return {
        "accounts": accounts,
        "accounts_by_kubernetes": {k: tuple(v) for k, v in by_kubernetes.items()},
        "accounts_by_client": {k: tuple(v) for k, v in by_client.items()},
    }


def _rules(
    bodies: Iterable[Body],
    records: Mapping[str, Mapping[str, Any]],
    mode: str,
    skipped: Counter[str],
) -> dict[str, tuple[RuleView, ...]]:
    """The rules that grant, by audience: those of the owning namespace (decided with the
    operator's function, from the record at the audience's name), except releasing ones."""
    claims: dict[str, list[RuleClaim]] = {}
    views: dict[str, list[RuleView]] = {}
    for body in bodies:
        try:
            spec = RuleSpec.from_body(body)
            if not spec.audience:
                continue
            claim = spec.claim(parse_time(body["metadata"]["creationTimestamp"]))
        except Exception as exc:  # one object's content must never fail the whole view
            _skip(KIND_ACCESS_RULE, body, exc, skipped)
            continue
        # Counted as a claim even when it grants nothing (as in the operator's index).
        claims.setdefault(spec.audience, []).append(claim)
        try:
            condition = compile_condition(spec.when) if spec.when else None
        except ExpressionError:
            continue  # an uncompilable condition grants nothing (and the operator says why)
        except Exception as exc:  # one object's content must never fail the whole view
            _skip(KIND_ACCESS_RULE, body, exc, skipped)
            continue
        if spec.releasing:
            continue
        views.setdefault(spec.audience, []).append(
            RuleView(
                ref=spec.ref,
                audience=spec.audience,
                subjects=frozenset(spec.subjects),
                scopes=spec.scopes,
                condition=condition,
                http=spec.http,
                account_claims=spec.account_claims,
            )
        )
    owned: dict[str, tuple[RuleView, ...]] = {}
    for audience, rules in views.items():
        found = records.get(record_name(audience))
        record = None if found is None else decode_audience_record(found, audience)
        owner = decide(audience, mode, record, claims[audience]).owner
        owned[audience] = tuple(r for r in rules if r.ref.namespace == owner)
    return owned


def _keyrings(
    bodies: Iterable[Body],
    secrets: Mapping[str, Body],
    cache: KeyCache,
    skipped: Counter[str],
) -> dict[str, KeyRing]:
    rings: dict[str, KeyRing] = {}
    for body in bodies:
        try:
            ring = _keyring(body, secrets, cache)
        except Exception as exc:  # one object's content must never fail the whole view
            _skip(KIND_SIGNING_KEY, body, exc, skipped)
            continue
        if ring is not None:
            rings[ring.name] = ring
    return rings


def _keyring(body: Body, secrets: Mapping[str, Body], cache: KeyCache) -> KeyRing | None:
    spec = SigningKeySpec.from_body(body)
    name = body["metadata"]["name"]
    secret = secrets.get(spec.secret_name)
    # Only the Secret this very SigningKey controls holds its keys.
    if secret is None or controller_uid(secret) != body["metadata"].get("uid"):
        return None
    stored = list(decode_keys(secret))
    active = next((k for k in stored if k.state == "active"), None)
    if active is None:
        return None  # not reconciled yet
    signing = active.material.use == "sig"
    return KeyRing(
        name=name,
        algorithm=active.material.algorithm,
        use=active.material.use,
        signer=_cached(cache.signers, active, Signer) if signing else None,
        public_keys=tuple(_public_jwk(k, cache.public) for k in stored),
        pre_publish=spec.pre_publish,
        active_kid=active.material.kid,
        opaque={k.material.kid: _cached(cache.opaque, k, OpaqueKey) for k in stored}
        if signing
        else {},
        encrypter=None if signing else _cached(cache.encrypters, active, Encrypter),
        decrypters={}
        if signing
        else {k.material.kid: _cached(cache.decrypters, k, Decrypter) for k in stored},
    )


T = TypeVar("T")


def _cached(cache: dict[str, T], key: StoredKey, make: Callable[[KeyMaterial], T]) -> T:
    if key.material.kid not in cache:
        cache[key.material.kid] = make(key.material)
    return cache[key.material.kid]


def _public_jwk(key: StoredKey, cache: dict[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    if key.material.kid not in cache:
        cache[key.material.kid] = key.material.public_jwk()
    return cache[key.material.kid]


def _namespace(body: Body) -> str | None:
    return (body.get("metadata") or {}).get("namespace")


def _name(body: Body) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"
