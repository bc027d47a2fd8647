"""An immutable view of everything the token server decides with, built from raw objects.

Built by a pure function from the informers' objects, so tests pass in hand-made objects;
the token server keeps it up to date change by change with the same code
(kubemint.store.builder), and each Snapshot shares its unchanged tables with the previous one.
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
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubemint.api.accessrule import HttpRule
from kubemint.api.audiences import FIRST_CLAIM
from kubemint.api.meta import (
    ObjectRef,
)
from kubemint.api.records import (
    Generation,
    StoredKey,
    controller_uid,
    decode_key_set,
    withdrawn_kids,
)
from kubemint.api.serviceaccount import (
    DEFAULT_JWKS_URIS_PER_NAMESPACE,
    IssuerSpec,
    admitted_jwks_uris,
)
from kubemint.api.signingkey import SigningKeySpec, withdrawn_by
from kubemint.api.trustedissuer import TrustedIssuerRef
from kubemint.crypto.jwt import (
    Decrypter,
    Encrypter,
    PreparedKeys,
    Signer,
)
from kubemint.crypto.keys import KeyMaterial
from kubemint.crypto.opaque import OpaqueKey
from kubemint.policy.expressions import Condition

log = logging.getLogger("kubemint.snapshot")
Body = dict[str, Any]


@dataclass(frozen=True, slots=True, weakref_slot=True)
class ClientProfile:
    """What a client is allowed and how its tokens look: most clients share theirs with many
    others (same grants, scopes, audiences, lifetime), so each distinct profile is one object
    (`ClientProfile.shared`), ~140 bytes less per client than holding these in each view."""

    disabled: bool
    grant_types: frozenset[str]
    auth_method: str
    scopes: frozenset[str]
    audiences: tuple[str, ...]
    token_lifetime: int
    token_format: str
    signing_key: str
    encryption_key: str | None

    def shared(self) -> ClientProfile:
        """The one live profile equal to this one."""
        return _PROFILES.setdefault(self, self)


_PROFILES: weakref.WeakValueDictionary[ClientProfile, ClientProfile] = weakref.WeakValueDictionary()


@dataclass(frozen=True, slots=True)  # slots: there are as many as clients
class ClientView:
    """One OAuth2Client as the token server decides with it: its own names and secrets, and
    a profile shared with the clients set up like it (`ClientView.make` takes the fields)."""

    ref: ObjectRef
    client_id: str
    profile: ClientProfile
    secrets: tuple[Generation, ...] = ()
    jwks: Mapping[str, Any] | None = None
    uid: str = ""  # this object's, so a re-created client of the same name is told apart
    created: str = ""  # creationTimestamp: the oldest claimant of a client id holds it

    @classmethod
    def make(
        cls,
        *,
        ref: ObjectRef,
        client_id: str,
        disabled: bool,
        grant_types: frozenset[str],
        auth_method: str,
        scopes: frozenset[str],
        audiences: tuple[str, ...],
        token_lifetime: int,
        token_format: str,
        signing_key: str,
        encryption_key: str | None,
        secrets: tuple[Generation, ...] = (),
        jwks: Mapping[str, Any] | None = None,
        uid: str = "",
        created: str = "",
    ) -> ClientView:
        profile = ClientProfile(
            disabled,
            grant_types,
            auth_method,
            scopes,
            audiences,
            token_lifetime,
            token_format,
            signing_key,
            encryption_key,
        )
        return cls(ref, client_id, profile.shared(), secrets, jwks, uid, created)

    @property
    def disabled(self) -> bool:
        return self.profile.disabled

    @property
    def grant_types(self) -> frozenset[str]:
        return self.profile.grant_types

    @property
    def auth_method(self) -> str:
        return self.profile.auth_method

    @property
    def scopes(self) -> frozenset[str]:
        return self.profile.scopes

    @property
    def audiences(self) -> tuple[str, ...]:
        return self.profile.audiences

    @property
    def token_lifetime(self) -> int:
        return self.profile.token_lifetime

    @property
    def token_format(self) -> str:
        return self.profile.token_format

    @property
    def signing_key(self) -> str:
        return self.profile.signing_key

    @property
    def encryption_key(self) -> str | None:
        return self.profile.encryption_key

    def secret_digests(self, now: datetime.datetime) -> list[str]:
        """Digests of the secrets that verify at `now` (current + overlapping previous)."""
        return [g.sha256 for g in self.secrets if g.not_after is None or g.not_after > now]

    def hmac_keys(self, now: datetime.datetime) -> list[str]:
        return [
            g.hmac_key
            for g in self.secrets
            if g.hmac_key and (g.not_after is None or g.not_after > now)
        ]


@dataclass(frozen=True, slots=True)
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
    operator runs in. The same code as the token server's incremental view
    (kubemint.store.builder), fed everything at once."""
    from kubemint.store.builder import SnapshotBuilder, full_changes  # builder imports this

    builder = SnapshotBuilder(server_namespace, audience_ownership, key_cache)
    for kind, bodies in (
        ("secrets", secrets),
        ("clients", clients),
        ("accounts", accounts),
        ("rules", rules),
        ("audiences", audience_records),
        ("keys", signing_keys),
        ("trusted", trusted_issuers),
        ("kubernetes-accounts", kubernetes_accounts),
    ):
        builder.apply(kind, full_changes(bodies))
    return builder.snapshot()


def keyring(
    spec: SigningKeySpec, body: Body, secrets: Mapping[str, Body], cache: KeyCache
) -> KeyRing | None:
    """One SigningKey's ring, from the Secret it controls (None until it is reconciled)."""
    name = body["metadata"]["name"]
    secret = secrets.get(spec.secret_name)
    # Only the Secret this very SigningKey controls holds its keys.
    if secret is None or controller_uid(secret) != body["metadata"].get("uid"):
        return None
    key_set = decode_key_set(secret)
    original = next((k for k in key_set.keys if k.state == "active"), None)
    if original is None:
        return None  # not reconciled yet
    # Withdrawn kids (the annotation, status, the Secret's record) are out at once, before
    # the operator rewrites the Secret (or if it is down, or a restored backup brought them
    # back): until a fresh key is there, nothing signs (the token endpoint answers 503).
    named = withdrawn_by(body) | {w.kid for w in key_set.withdrawn}
    out = withdrawn_kids(key_set.keys, named)
    stored = [k for k in key_set.keys if k.kid not in out]
    active = original if original.kid not in out else None
    signing = original.material.use == "sig"
    return KeyRing(
        name=name,
        algorithm=original.material.algorithm,
        use=original.material.use,
        signer=_cached(cache.signers, active, Signer) if signing and active else None,
        public_keys=tuple(_public_jwk(k, cache.public) for k in stored),
        pre_publish=spec.pre_publish,
        active_kid=active.kid if active else "",
        opaque={k.kid: _cached(cache.opaque, k, OpaqueKey) for k in stored if _opens(k)}
        if signing
        else {},
        encrypter=_cached(cache.encrypters, active, Encrypter) if active and not signing else None,
        decrypters={}
        if signing
        else {k.kid: _cached(cache.decrypters, k, Decrypter) for k in stored if _private(k)},
    )


def _opens(key: StoredKey) -> bool:
    """A key that can open opaque tokens: a private one, or a retired one that kept the key."""
    material = key.material
    return isinstance(material, KeyMaterial) or material.opaque_secret is not None


def _private(key: StoredKey) -> bool:
    return isinstance(key.material, KeyMaterial)


T = TypeVar("T")


def _cached(cache: dict[str, T], key: StoredKey, make: Callable[[Any], T]) -> T:
    if key.material.kid not in cache:
        cache[key.material.kid] = make(key.material)
    return cache[key.material.kid]


def _public_jwk(key: StoredKey, cache: dict[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    if key.material.kid not in cache:
        cache[key.material.kid] = key.material.public_jwk()
    return cache[key.material.kid]
