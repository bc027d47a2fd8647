"""OAuth2Client decisions: effective client id, checks, the mounted Secret, verification data.

Two Secrets come from one client: the credentials Secret in the client's namespace (what
workloads mount: client-id, client-secret, token-url, issuer) and the verification record in
the token server's namespace (secret digests, HMAC keys for client_secret_jwt only, public
keys for private_key_jwt), because the token server reads no Secret outside its namespace.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubemint.api.identity import derived_client_id, explicit_client_id_problem
from kubemint.api.meta import ObjectRef, Outcome, parse_duration
from kubemint.crypto.jwks import InvalidJWKS, parse_key_document, parse_public_jwks
from kubemint.reconcile.checks import Check, evaluate
from kubemint.reconcile.rotating_secret import SecretPlan, SecretPolicy

SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})
DEFAULT_LIFETIME = "15m"
DEFAULT_OVERLAP = "1h"
# Reasons that leave a client with no id of its own: nothing may authenticate as it.
REFUSED_CLIENT_ID = frozenset({"ClientIdConflict", "ClientIdOutsideNamespace"})


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

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ClientSpec:
        meta, spec = body["metadata"], body.get("spec") or {}
        secret = spec.get("secret") or {}
        template = secret.get("template") or {}
        ref = spec.get("jwksSecretRef")
        rotate = secret.get("rotateEvery")
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            client_id=effective_client_id(meta["namespace"], meta["name"], spec),
            auth_method=spec.get("authMethod", "client_secret_basic"),
            grant_types=tuple(spec.get("grantTypes") or ["client_credentials"]),
            token_lifetime=parse_duration(spec.get("tokenLifetime", DEFAULT_LIFETIME)),
            signing_key=spec.get("signingKey", "default"),
            encryption_key=spec.get("encryptionKey"),
            jwks=spec.get("jwks"),
            jwks_secret_ref=(ref["name"], ref.get("key", "jwks.json")) if ref else None,
            secret_name=secret.get("name") or f"{meta['name']}-credentials",
            rotate_every=parse_duration(rotate) if rotate else None,
            overlap=parse_duration(secret.get("overlap", DEFAULT_OVERLAP)),
            template_labels=dict(template.get("labels") or {}),
            template_annotations=dict(template.get("annotations") or {}),
            explicit_client_id=bool(spec.get("clientId")),
        )

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("OAuth2Client", self.namespace, self.name)

    @property
    def uses_secret(self) -> bool:
        return self.auth_method in SECRET_METHODS

    @property
    def secret_policy(self) -> SecretPolicy:
        return SecretPolicy(
            rotate_every=self.rotate_every,
            overlap=self.overlap,
            keep_hmac_key=self.auth_method == "client_secret_jwt",
        )


@dataclass(frozen=True)
class ClientContext:
    """What the handler looked up for the checks (from indexes and the API)."""

    signing_keys: Mapping[str, str]  # SigningKey name → use ("sig" | "enc"), server namespace
    server_namespace: str
    jwks_secret_text: str | None = None  # the referenced Secret key's content, None if absent
    client_id_holder: ObjectRef | None = None  # the oldest client claiming the client id
    client_id_contested: bool = False  # several claimed it first, in the same second


def client_id_holder(claims: Iterable[tuple[str, str, str]]) -> tuple[ObjectRef | None, bool]:
    """Who holds a client id, given every (creationTimestamp, namespace, name) claiming it:
    (the oldest claimant, False), or (None, True) when several claimed it in the same second
    (timestamps have second resolution). No tie-break by name: a newcomer could pick a name
    that sorts first and take over an id someone else was given in that second."""
    claims = list(claims)
    if not claims:
        return None, False
    oldest = min(created for created, _, _ in claims)
    first = [(namespace, name) for created, namespace, name in claims if created == oldest]
    if len(first) > 1:
        return None, True
    return ObjectRef("OAuth2Client", *first[0]), False


def effective_client_id(namespace: str, name: str, spec: Mapping[str, Any]) -> str:
    """`spec.clientId`, or `<namespace>.<name>` (unique because namespace/name is)."""
    return str(spec.get("clientId") or derived_client_id(namespace, name))


def claims_client_id(namespace: str, spec: Mapping[str, Any]) -> bool:
    """Whether a client takes part in deciding who holds its client id: one whose explicit
    `spec.clientId` lies outside its namespace's space holds nothing and blocks nobody (else
    it could pre-claim another namespace's future `<namespace>.<name>` for good)."""
    explicit = spec.get("clientId")
    return not explicit or explicit_client_id_problem(namespace, str(explicit)) is None


def client_jwks(spec: ClientSpec, context: ClientContext) -> dict[str, Any] | None:
    """The client's public keys for private_key_jwt; raises InvalidJWKS naming the field."""
    if spec.jwks is not None:
        return parse_public_jwks(spec.jwks, "spec.jwks")
    if spec.jwks_secret_ref is not None and context.jwks_secret_text is not None:
        name, key = spec.jwks_secret_ref
        return parse_key_document(context.jwks_secret_text, f"Secret {name} key {key}")
    return None


def _signing_key_exists(spec: ClientSpec, ctx: ClientContext) -> Outcome | None:
    use = ctx.signing_keys.get(spec.signing_key)
    if use is None:
        return Outcome(
            False,
            "SigningKeyNotFound",
            f"spec.signingKey: SigningKey {ctx.server_namespace}/{spec.signing_key} does not exist",
        )
    if use != "sig":
        return Outcome(
            False,
            "SigningKeyWrongUse",
            f"spec.signingKey: SigningKey {spec.signing_key} is an encryption key (use: enc)",
        )
    return None


def _encryption_key_exists(spec: ClientSpec, ctx: ClientContext) -> Outcome | None:
    if spec.encryption_key is None:
        return None
    use = ctx.signing_keys.get(spec.encryption_key)
    if use is None:
        return Outcome(
            False,
            "EncryptionKeyNotFound",
            f"spec.encryptionKey: SigningKey {ctx.server_namespace}/"
            f"{spec.encryption_key} does not exist",
        )
    if use != "enc":
        return Outcome(
            False,
            "EncryptionKeyWrongUse",
            f"spec.encryptionKey: SigningKey {spec.encryption_key} is a signing key; "
            "use one with use: enc",
        )
    return None


def _client_keys_valid(spec: ClientSpec, ctx: ClientContext) -> Outcome | None:
    if spec.jwks_secret_ref is not None and ctx.jwks_secret_text is None:
        name, key = spec.jwks_secret_ref
        return Outcome(
            False,
            "JWKSSecretNotFound",
            f"spec.jwksSecretRef: Secret {spec.namespace}/{name} with key {key} does not exist",
        )
    try:
        client_jwks(spec, ctx)
    except InvalidJWKS as exc:
        return Outcome(False, "InvalidJWKS", str(exc))
    return None


def _client_id_in_namespace(spec: ClientSpec, ctx: ClientContext) -> Outcome | None:
    """An explicit id must start with `<namespace>.`: it can then never equal another
    namespace's id (derived or explicit) nor a ServiceAccount's `kubemint:` subject."""
    if not spec.explicit_client_id:
        return None
    problem = explicit_client_id_problem(spec.namespace, spec.client_id)
    return Outcome(False, "ClientIdOutsideNamespace", problem) if problem else None


def _client_id_unique(spec: ClientSpec, ctx: ClientContext) -> Outcome | None:
    """The message never names the holder: it may live in a namespace this tenant cannot see.
    It names the field the id comes from: spec.clientId, or metadata.name for the derived
    `<namespace>.<name>` (which another client may have set explicitly)."""
    field = "spec.clientId" if spec.explicit_client_id else "metadata.name"
    if ctx.client_id_contested:
        return Outcome(
            False,
            "ClientIdConflict",
            f"{field}: the client id {spec.client_id!r} was claimed by several OAuth2Clients "
            "created in the same second; nobody holds it until all but one are deleted",
        )
    holder = ctx.client_id_holder
    if holder is None or (holder.namespace, holder.name) == (spec.namespace, spec.name):
        return None
    if spec.explicit_client_id:
        message = f"spec.clientId: {spec.client_id!r} is already used by an older OAuth2Client"
    else:
        message = (
            f"metadata.name: the client id {spec.client_id!r}, derived from namespace and name, "
            "is already used by an older OAuth2Client; recreate this client with spec.clientId "
            "set or with another name"
        )
    return Outcome(False, "ClientIdConflict", message)


CHECKS: tuple[Check[ClientSpec, ClientContext], ...] = (
    _client_id_in_namespace,
    _client_id_unique,
    _signing_key_exists,
    _encryption_key_exists,
    _client_keys_valid,
)


def check_client(spec: ClientSpec, context: ClientContext) -> Outcome:
    return evaluate(CHECKS, spec, context)


def credentials_data(
    spec: ClientSpec, plan: SecretPlan | None, issuer: str, token_url: str
) -> dict[str, str]:
    """The mounted Secret's keys (the contract workloads rely on)."""
    data = {
        "client-id": spec.client_id,
        "token-url": token_url,
        "issuer": issuer,
        "auth-method": spec.auth_method,  # how tools present the secret (basic or post)
    }
    if plan is not None:
        data["client-secret"] = plan.plaintext
    return data


def verification_record(
    spec: ClientSpec, plan: SecretPlan | None, jwks: Mapping[str, Any] | None, uid: str
) -> dict[str, Any]:
    """What the token server needs to authenticate this client; digests, never plaintext
    (except HMAC keys for client_secret_jwt, which cannot be verified any other way)."""
    return {
        "clientId": spec.client_id,
        "namespace": spec.namespace,
        "name": spec.name,
        "uid": uid,
        "authMethod": spec.auth_method,
        "secrets": [g.to_json() for g in plan.generations] if plan else [],
        "jwks": dict(jwks) if jwks else None,
    }


def verification_secret_name(kind_prefix: str, namespace: str, name: str) -> str:
    """`<prefix>-<namespace>-<name>`, shortened with a digest when it would exceed 253 chars."""
    full = f"{kind_prefix}-{namespace}-{name}"
    if len(full) <= 253:
        return full
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:16]
    return f"{full[:230].rstrip('.-')}-{digest}"
