"""OAuth2Client as Python reads it: every spec field, parsed once, with the CRD's defaults.

The operator, its pure decisions and the token server's view all read a client through
`ClientSpec.from_body`, so a default cannot differ between them (a test compares these
defaults with the CRD schema's).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubemint.api.identity import derived_client_id, explicit_client_id_problem
from kubemint.api.meta import KIND_CLIENT, ObjectRef, parse_duration

SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})
DEFAULT_GRANT_TYPES = ("client_credentials",)
DEFAULT_AUTH_METHOD = "client_secret_basic"
DEFAULT_LIFETIME = "15m"
DEFAULT_TOKEN_FORMAT = "jwt"  # noqa: S105 — a format name
DEFAULT_SIGNING_KEY = "default"
DEFAULT_JWKS_KEY = "jwks.json"
DEFAULT_OVERLAP = "1h"
MAX_LIFETIME = datetime.timedelta(hours=24)  # as the CRD says: tokenLifetime 10s to 24h


@dataclass(frozen=True)
class ClientSpec:
    namespace: str
    name: str
    client_id: str
    auth_method: str
    grant_types: tuple[str, ...]
    token_lifetime: datetime.timedelta
    signing_key: str
    encryption_key: str | None
    jwks: Mapping[str, Any] | None
    jwks_secret_ref: tuple[str, str] | None  # (secret name, key)
    secret_name: str
    rotate_every: datetime.timedelta | None
    overlap: datetime.timedelta
    template_labels: Mapping[str, str] = field(default_factory=dict)
    template_annotations: Mapping[str, str] = field(default_factory=dict)
    explicit_client_id: bool = False  # spec.clientId is set (else the id is derived)
    disabled: bool = False
    scopes: frozenset[str] = frozenset()
    audiences: tuple[str, ...] = ()
    token_format: str = DEFAULT_TOKEN_FORMAT

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ClientSpec:
        """Raises ValueError (or KeyError/TypeError) for a body the CRD would not admit."""
        meta, spec = body["metadata"], body.get("spec") or {}
        secret = spec.get("secret") or {}
        template = secret.get("template") or {}
        ref = spec.get("jwksSecretRef")
        rotate = secret.get("rotateEvery")
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            client_id=effective_client_id(meta["namespace"], meta["name"], spec),
            auth_method=spec.get("authMethod", DEFAULT_AUTH_METHOD),
            grant_types=tuple(spec.get("grantTypes") or DEFAULT_GRANT_TYPES),
            token_lifetime=parse_duration(
                spec.get("tokenLifetime", DEFAULT_LIFETIME), "spec.tokenLifetime", MAX_LIFETIME
            ),
            signing_key=spec.get("signingKey", DEFAULT_SIGNING_KEY),
            encryption_key=spec.get("encryptionKey"),
            jwks=spec.get("jwks"),
            jwks_secret_ref=(ref["name"], ref.get("key", DEFAULT_JWKS_KEY)) if ref else None,
            secret_name=secret.get("name") or f"{meta['name']}-credentials",
            rotate_every=parse_duration(rotate, "spec.secret.rotateEvery") if rotate else None,
            overlap=parse_duration(secret.get("overlap", DEFAULT_OVERLAP), "spec.secret.overlap"),
            template_labels=dict(template.get("labels") or {}),
            template_annotations=dict(template.get("annotations") or {}),
            explicit_client_id=bool(spec.get("clientId")),
            disabled=bool(spec.get("disabled", False)),
            scopes=frozenset(spec.get("scopes") or ()),
            audiences=tuple(spec.get("audiences") or ()),
            token_format=spec.get("tokenFormat", DEFAULT_TOKEN_FORMAT),
        )

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(KIND_CLIENT, self.namespace, self.name)

    @property
    def uses_secret(self) -> bool:
        return self.auth_method in SECRET_METHODS


def effective_client_id(namespace: str, name: str, spec: Mapping[str, Any]) -> str:
    """`spec.clientId`, or `<namespace>.<name>` (unique because namespace/name is)."""
    return str(spec.get("clientId") or derived_client_id(namespace, name))


def claims_client_id(namespace: str, spec: Mapping[str, Any]) -> bool:
    """Whether a client takes part in deciding who holds its client id: one whose explicit
    `spec.clientId` lies outside its namespace's space holds nothing and blocks nobody (else
    it could pre-claim another namespace's future `<namespace>.<name>` for good)."""
    explicit = spec.get("clientId")
    return not explicit or explicit_client_id_problem(namespace, str(explicit)) is None


def client_id_holder(claims: Iterable[tuple[str, str, str]]) -> tuple[ObjectRef | None, bool]:
    """Who holds a client id, given every (creationTimestamp, namespace, name) claiming it:
    (the oldest claimant, False), or (None, True) when several claimed it in the same second
    (timestamps have second resolution). No tie-break by name: a newcomer could pick a name
    that sorts first and take over an id someone else was given in that second.

    The operator (status) and the token server (who authenticates) both decide with this."""
    claims = list(claims)
    if not claims:
        return None, False
    oldest = min(created for created, _, _ in claims)
    first = [(namespace, name) for created, namespace, name in claims if created == oldest]
    if len(first) > 1:
        return None, True
    return ObjectRef(KIND_CLIENT, *first[0]), False
