"""kubemint ServiceAccount → app-password Secret + verification record, federation checks."""

from __future__ import annotations

import json
from typing import Any

import kopf

from kubemint.api import trustedissuer
from kubemint.api.meta import (
    GROUP,
    KIND_ACCOUNT,
    ROLE_ACCOUNT_VERIFICATION,
    ROLE_APP_PASSWORD,
    VERSION,
)
from kubemint.controller.kube import decoded
from kubemint.controller.runtime import (
    BACKOFF,
    Runtime,
    changed,
    iso,
    needs_recheck,
    now,
    owner_labels,
    post_events,
    reconciler,
    status_update,
)
from kubemint.reconcile.oauth2clients import verification_secret_name
from kubemint.reconcile.rotating_secret import generations_from_record, plan_secret
from kubemint.reconcile.serviceaccounts import (
    AccountContext,
    AccountSpec,
    check_account,
    federation_status,
    issuer_keys,
    verification_record,
)

PLURAL = "serviceaccounts"
RECORD_FIELD = "account.json"
PENDING = ("nextPasswordRotationAt",)


def verification_name(namespace: str, name: str) -> str:
    return verification_secret_name("account", namespace, name)


async def reconcile(
    runtime: Runtime,
    body: kopf.Body | dict[str, Any],
    clients: dict[str, tuple[str, ...]],
    trusted: dict[str, str] | None = None,
) -> dict[str, Any]:
    settings, kube = runtime.settings, runtime.kube
    spec = AccountSpec.from_body(body)
    key_texts: dict[tuple[str, str], str | None] = {}
    for issuer in spec.issuers:
        if issuer.jwks_secret_ref is not None:
            secret_name, key = issuer.jwks_secret_ref
            data = decoded(await kube.read_secret(spec.namespace, secret_name)) or {}
            key_texts[issuer.jwks_secret_ref] = data.get(key)
    k8s_accounts = (
        await kube.service_account_names(spec.namespace) if spec.kubernetes else frozenset()
    )
    context = AccountContext(clients, k8s_accounts, key_texts, trusted or {})
    outcome = check_account(spec, context)
    record_name = verification_name(spec.namespace, spec.name)

    async with runtime.lock(KIND_ACCOUNT, spec.namespace, spec.name):
        record = await kube.read_secret(settings.namespace, record_name)
        moment = now()
        plan = None
        if spec.app_passwords is not None:
            live = await kube.read_secret(spec.namespace, spec.app_passwords.secret_name)
            plan = plan_secret(
                (decoded(live) or {}).get("password"),
                generations_from_record((decoded(record) or {}).get(RECORD_FIELD), "passwords"),
                spec.app_passwords.policy,
                moment,
                what="app password",
            )
            await kube.apply_secret(
                spec.namespace,
                spec.app_passwords.secret_name,
                {"username": spec.name, "password": plan.plaintext},
                labels={
                    **spec.app_passwords.labels,
                    **owner_labels(KIND_ACCOUNT, spec.namespace, spec.name, ROLE_APP_PASSWORD),
                },
                annotations=spec.app_passwords.annotations,
                owner=body,
                live=live,
            )
        try:
            keys = issuer_keys(spec, context)
        except (ValueError, LookupError):
            keys = {}  # reported through `outcome`
        document = verification_record(spec, plan, keys, body["metadata"]["uid"])
        await kube.apply_secret(
            settings.namespace,
            record_name,
            {RECORD_FIELD: json.dumps(document, sort_keys=True)},
            labels=owner_labels(KIND_ACCOUNT, spec.namespace, spec.name, ROLE_ACCOUNT_VERIFICATION),
            live=record,
        )
    post_events(body, plan.events if plan else ())
    return status_update(
        body,
        outcome,
        moment,
        {
            "subject": spec.subject,
            "clients": [c for c in spec.clients if c in clients],
            "federation": federation_status(spec, context),
            "appPasswordSecret": spec.app_passwords.secret_name if spec.app_passwords else None,
            "passwordRotatedAt": iso(plan.rotated_at) if plan else None,
            "nextPasswordRotationAt": iso(plan.next_rotation_at) if plan else None,
        },
    )


def pending(*, spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    """Re-check while not Ready or while a rotation or an overlap is scheduled; and while it
    names TrustedIssuers, whose removal by an admin its status must come to say."""
    federation = spec.get("federation") or {}
    return needs_recheck(status, *PENDING) or bool(federation.get("trustedIssuers"))


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    settings = runtime.settings

    @kopf.index(GROUP, VERSION, "oauth2clients", id="client_grants", registry=registry)
    def client_grants(*, body: kopf.Body, meta: kopf.Meta, **_: Any) -> dict[str, Any]:
        grants = tuple((body.get("spec") or {}).get("grantTypes") or ["client_credentials"])
        return {meta["namespace"]: (meta["name"], grants)}

    @kopf.index(GROUP, VERSION, trustedissuer.PLURAL, id="trusted_issuers", registry=registry)
    def trusted_issuers(*, body: kopf.Body, meta: kopf.Meta, **_: Any) -> dict[str, str]:
        """TrustedIssuer name → issuer URL, for those in the server namespace only."""
        issuer = (body.get("spec") or {}).get("issuer")
        if meta["namespace"] != settings.namespace or not issuer:
            return {}
        return {meta["name"]: issuer}

    @reconciler(
        registry, PLURAL, id="service_account", interval=settings.recheck_interval, when=pending
    )
    async def service_account(*, body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
        clients = dict(kwargs["client_grants"].get(body["metadata"]["namespace"], []))
        trusted = {name: next(iter(urls)) for name, urls in kwargs["trusted_issuers"].items()}
        patch.status.update(changed(body, await reconcile(runtime, body, clients, trusted)))

    @kopf.on.delete(
        GROUP, VERSION, PLURAL, id="service_account_deleted", backoff=BACKOFF, registry=registry
    )
    async def service_account_deleted(*, meta: kopf.Meta, **_: Any) -> None:
        await runtime.kube.delete_secret(
            settings.namespace, verification_name(meta["namespace"], meta["name"])
        )
        runtime.forget(KIND_ACCOUNT, meta["namespace"], meta["name"])
