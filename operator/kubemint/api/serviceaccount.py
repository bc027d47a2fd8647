"""kubemint ServiceAccount as Python reads it: every spec field, parsed once, CRD defaults."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubemint.api.identity import account_subject
from kubemint.api.meta import KIND_ACCOUNT, ObjectRef, parse_duration
from kubemint.api.trustedissuer import TrustedIssuerRef

DEFAULT_OVERLAP = "1h"
DEFAULT_JWKS_KEY = "jwks.json"


def subject_of(namespace: str, name: str) -> str:
    """The `sub` claim of tokens issued to a kubemint ServiceAccount."""
    return account_subject(namespace, name)


@dataclass(frozen=True)
class IssuerSpec:
    issuer: str
    jwks_uri: str | None
    jwks_secret_ref: tuple[str, str] | None
    subject: str | None
    audience: str | None
    when: str | None


@dataclass(frozen=True)
class AppPasswordSpec:
    secret_name: str
    rotate_every: datetime.timedelta | None
    overlap: datetime.timedelta
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AccountSpec:
    namespace: str
    name: str
    clients: tuple[str, ...]
    app_passwords: AppPasswordSpec | None
    kubernetes: tuple[str, ...]
    issuers: tuple[IssuerSpec, ...]
    disabled: bool = False
    claims: Mapping[str, Any] = field(default_factory=dict)
    trusted_issuers: tuple[TrustedIssuerRef, ...] = ()  # spec.federation.trustedIssuers

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> AccountSpec:
        """Raises ValueError (or KeyError/TypeError) for a body the CRD would not admit."""
        meta, spec = body["metadata"], body.get("spec") or {}
        federation = spec.get("federation") or {}
        passwords = spec.get("appPasswords")
        app: AppPasswordSpec | None = None
        if passwords:
            template = passwords.get("template") or {}
            rotate = passwords.get("rotateEvery")
            app = AppPasswordSpec(
                secret_name=passwords["secretName"],
                rotate_every=(
                    parse_duration(rotate, "spec.appPasswords.rotateEvery") if rotate else None
                ),
                overlap=parse_duration(
                    passwords.get("overlap", DEFAULT_OVERLAP), "spec.appPasswords.overlap"
                ),
                labels=dict(template.get("labels") or {}),
                annotations=dict(template.get("annotations") or {}),
            )
        issuers = tuple(
            IssuerSpec(
                issuer=i["issuer"],
                jwks_uri=i.get("jwksUri"),
                jwks_secret_ref=(
                    (i["jwksSecretRef"]["name"], i["jwksSecretRef"].get("key", DEFAULT_JWKS_KEY))
                    if i.get("jwksSecretRef")
                    else None
                ),
                subject=i.get("subject"),
                audience=i.get("audience"),
                when=i.get("when"),
            )
            for i in federation.get("issuers") or []
        )
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            clients=tuple(spec.get("clients") or []),
            app_passwords=app,
            kubernetes=tuple(k["serviceAccountName"] for k in federation.get("kubernetes") or []),
            issuers=issuers,
            disabled=bool(spec.get("disabled", False)),
            claims=dict(spec.get("claims") or {}),
            trusted_issuers=tuple(
                TrustedIssuerRef.from_spec(t) for t in federation.get("trustedIssuers") or []
            ),
        )

    @property
    def federated(self) -> bool:
        """Whether any foreign JWT can authenticate as this account."""
        return bool(self.kubernetes or self.issuers or self.trusted_issuers)

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(KIND_ACCOUNT, self.namespace, self.name)

    @property
    def subject(self) -> str:
        return subject_of(self.namespace, self.name)


DEFAULT_JWKS_URIS_PER_NAMESPACE = 5


def admitted_jwks_uris(
    accounts: Iterable[tuple[str, str, Iterable[str | None]]], limit: int
) -> frozenset[str]:
    """The jwksUris of one namespace that the token server fetches: the first `limit`
    distinct ones, taking accounts oldest first (creationTimestamp, then name) and each
    account's issuers in order. `accounts` are (creationTimestamp, name, jwksUris). The
    operator and the token server both decide with this, so an account's status says what
    the server does; a URI over the limit costs only its namespace."""
    admitted: dict[str, None] = {}
    for _, _, uris in sorted(accounts, key=lambda a: (a[0], a[1])):
        for uri in uris:
            if uri and uri not in admitted and len(admitted) < limit:
                admitted[uri] = None
    return frozenset(admitted)
