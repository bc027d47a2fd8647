"""OAuth2Client decisions: effective client id, checks, the mounted Secret, verification data.

Two Secrets come from one client: the credentials Secret in the client's namespace (what
workloads mount: client-id, client-secret, token-url, issuer) and the verification record in
the token server's namespace (secret digests, HMAC keys for client_secret_jwt only, public
keys for private_key_jwt), because the token server reads no Secret outside its namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubemint.api.meta import ObjectRef, Outcome
from kubemint.api.oauth2client import ClientSpec
from kubemint.api.records import ClientRecord, Owner
from kubemint.crypto.jwks import InvalidJWKS, parse_key_document, parse_public_jwks
from kubemint.reconcile.checks import Check, evaluate
from kubemint.reconcile.rotating_secret import SecretPlan, SecretPolicy


@dataclass(frozen=True)
class ClientContext:
    """What the handler looked up for the checks (from indexes and the API)."""

    signing_keys: Mapping[str, str]  # SigningKey name → use ("sig" | "enc"), server namespace
    server_namespace: str
    jwks_secret_text: str | None = None  # the referenced Secret key's content, None if absent
    client_id_holder: ObjectRef | None = None  # the oldest client claiming the client id
    client_id_contested: bool = False  # several claimed it first, in the same second


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


def secret_policy(spec: ClientSpec) -> SecretPolicy:
    return SecretPolicy(
        rotate_every=spec.rotate_every,
        overlap=spec.overlap,
        keep_hmac_key=spec.auth_method == "client_secret_jwt",
    )


def verification_record(
    spec: ClientSpec, plan: SecretPlan | None, jwks: Mapping[str, Any] | None, owner: Owner
) -> ClientRecord:
    """What the token server needs to authenticate this client."""
    return ClientRecord(
        owner=owner,
        client_id=spec.client_id,
        auth_method=spec.auth_method,
        secrets=plan.generations if plan else (),
        jwks=dict(jwks) if jwks else None,
    )
