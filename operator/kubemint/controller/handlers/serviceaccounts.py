"""kubemint ServiceAccount → app-password Secret + verification record, federation checks."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import kopf

from kubemint.api import trustedissuer
from kubemint.api.meta import GROUP, KIND_ACCOUNT, ROLE_APP_PASSWORD, VERSION, Outcome
from kubemint.api.records import (
    AccountRecord,
    Owner,
    decode_or_none,
    encode,
    owner_annotations,
    owner_labels,
    record_name,
    record_role,
    secret_text,
)
from kubemint.api.serviceaccount import AccountSpec, admitted_jwks_uris
from kubemint.controller.handlers import clientindex
from kubemint.controller.kube import decoded
from kubemint.controller.runtime import (
    BACKOFF,
    Runtime,
    changed,
    create_or_converge,
    delete_record,
    first_create,
    invalid_spec,
    iso,
    needs_recheck,
    now,
    post_events,
    reconciler,
    remove_legacy_record,
    status_update,
)
from kubemint.reconcile.ownership import record_conflict, secret_conflict
from kubemint.reconcile.rotating_secret import plan_secret
from kubemint.reconcile.serviceaccounts import (
    AccountContext,
    check_account,
    federation_status,
    issuer_keys,
    password_policy,
    verification_record,
)

PLURAL = "serviceaccounts"
PENDING = ("nextPasswordRotationAt",)


async def reconcile(
    runtime: Runtime,
    body: kopf.Body | dict[str, Any],
    clients: dict[str, tuple[str, ...]],
    trusted: dict[str, str] | None = None,
    namespace_uris: Iterable[tuple[str, str, tuple[str | None, ...]]] = (),
    fresh: bool = False,
) -> dict[str, Any]:
    """The account's status after making its Secrets match it. `fresh`: a just-created
    account's first attempt: its Secrets are created without being read first, as for
    OAuth2Clients (AlreadyExists: reconciled from what is there). `namespace_uris`: the
    other accounts' jwksUris in its namespace (the per-namespace limit)."""
    settings, kube = runtime.settings, runtime.kube
    refused = invalid_spec(body, AccountSpec.from_body)
    if refused is not None:
        return refused
    spec = AccountSpec.from_body(body)
    owner = Owner.of({**body, "kind": KIND_ACCOUNT})
    key_texts: dict[tuple[str, str], str | None] = {}
    for issuer in spec.issuers:
        if issuer.jwks_secret_ref is not None:
            secret_name, key = issuer.jwks_secret_ref
            data = decoded(await kube.read_secret(spec.namespace, secret_name)) or {}
            key_texts[issuer.jwks_secret_ref] = data.get(key)
    k8s_accounts = (
        await kube.service_account_names(spec.namespace) if spec.kubernetes else frozenset()
    )
    limit = settings.jwks_uris_per_namespace
    context = AccountContext(
        clients,
        k8s_accounts,
        key_texts,
        trusted or {},
        admitted_jwks_uris=admitted_jwks_uris([*namespace_uris, _jwks_uris_of(body, spec)], limit),
        jwks_uris_per_namespace=limit,
        cluster_networks=settings.cluster_networks,
        allowed_networks=settings.issuer_fetch_allow,
    )
    outcome = check_account(spec, context)
    fields: dict[str, Any] = {"subject": spec.subject}

    async with runtime.lock(KIND_ACCOUNT, spec.namespace, spec.name):
        status, events = await create_or_converge(
            functools.partial(_converge, runtime, body, spec, owner, outcome, context, fields),
            fresh,
        )
    post_events(body, events)
    return status


async def _converge(
    runtime: Runtime,
    body: kopf.Body | dict[str, Any],
    spec: AccountSpec,
    owner: Owner,
    outcome: Outcome,
    context: AccountContext,
    fields: dict[str, Any],
    *,
    known_absent: bool,
) -> tuple[dict[str, Any], tuple[tuple[str, str], ...]]:
    """Write the Secrets (under the account's lock); the status and the Events to post.
    `known_absent`: no Secret is read, each is created (AlreadyExists if one is there)."""
    settings, kube = runtime.settings, runtime.kube
    name = record_name(KIND_ACCOUNT, owner.uid)
    live_record = None if known_absent else await kube.read_secret(settings.namespace, name)
    if live_record is None and not known_absent:
        await remove_legacy_record(runtime, owner)
    app = spec.app_passwords
    live = (
        await kube.read_secret(spec.namespace, app.secret_name)
        if app and not known_absent
        else None
    )
    conflict = record_conflict(live_record, owner, settings.namespace, name)
    if app is not None:
        conflict = (
            secret_conflict(live, owner, "spec.appPasswords.secretName", app.secret_name)
            or conflict
        )
    if conflict is not None:
        return status_update(body, conflict, now(), fields), ()
    moment = now()
    plan = None
    if app is not None:
        stored = decode_or_none(live_record)
        plan = plan_secret(
            secret_text(live).get("password") if live else None,
            stored.passwords if isinstance(stored, AccountRecord) else (),
            password_policy(app),
            moment,
            what="app password",
        )
        await kube.apply_secret(
            spec.namespace,
            app.secret_name,
            {"username": spec.name, "password": plan.plaintext},
            labels={**app.labels, **owner_labels(owner, ROLE_APP_PASSWORD)},
            annotations={**app.annotations, **owner_annotations(owner)},
            owner=body,
            live=live,
        )
    try:
        keys = issuer_keys(spec, context)
    except (ValueError, LookupError):
        keys = {}  # reported through `outcome`
    await kube.apply_secret(
        settings.namespace,
        name,
        encode(verification_record(spec, plan, keys, owner)),
        labels=owner_labels(owner, record_role(KIND_ACCOUNT)),
        annotations=owner_annotations(owner),
        live=live_record,
    )
    status = status_update(
        body,
        outcome,
        moment,
        {
            **fields,
            "clients": [c for c in spec.clients if c in context.clients],
            "federation": federation_status(spec, context),
            "appPasswordSecret": app.secret_name if app else None,
            "passwordRotatedAt": iso(plan.rotated_at) if plan else None,
            "nextPasswordRotationAt": iso(plan.next_rotation_at) if plan else None,
        },
    )
    return status, plan.events if plan else ()


def _jwks_uris_of(
    body: kopf.Body | dict[str, Any], spec: AccountSpec
) -> tuple[str, str, tuple[str | None, ...]]:
    """(creationTimestamp, name, jwksUris): what `admitted_jwks_uris` orders accounts by."""
    created = str(body["metadata"].get("creationTimestamp") or "")
    return created, spec.name, tuple(i.jwks_uri for i in spec.issuers)


def pending(*, spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    """Re-check while not Ready or while a rotation or an overlap is scheduled; and while it
    names TrustedIssuers, whose removal by an admin its status must come to say."""
    federation = spec.get("federation") or {}
    return needs_recheck(status, *PENDING) or bool(federation.get("trustedIssuers"))


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    settings = runtime.settings

    @kopf.index(GROUP, VERSION, trustedissuer.PLURAL, id="trusted_issuers", registry=registry)
    async def trusted_issuers(*, body: kopf.Body, meta: kopf.Meta, **_: Any) -> dict[str, str]:
        """TrustedIssuer name → issuer URL, for those in the server namespace only."""
        issuer = (body.get("spec") or {}).get("issuer")
        if meta["namespace"] != settings.namespace or not issuer:
            return {}
        return {meta["name"]: issuer}

    @kopf.index(GROUP, VERSION, PLURAL, id="account_jwks_uris", registry=registry)
    async def account_jwks_uris(*, body: kopf.Body, meta: kopf.Meta, **_: Any) -> dict[str, Any]:
        """Namespace → each account's jwksUris, for the per-namespace quota."""
        issuers = ((body.get("spec") or {}).get("federation") or {}).get("issuers") or []
        uris = tuple(i.get("jwksUri") for i in issuers if isinstance(i, dict))
        if not any(uris):
            return {}
        created = str(meta.get("creationTimestamp") or "")
        return {meta["namespace"]: (created, meta["name"], uris)}

    @reconciler(
        registry,
        PLURAL,
        id="service_account",
        interval=settings.recheck_interval,
        slots=runtime.slots,
        observer=runtime.observer,
        when=pending,
    )
    async def service_account(*, body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
        clients = dict(clientindex.grants(kwargs[clientindex.INDEX], body["metadata"]["namespace"]))
        trusted = {name: next(iter(urls)) for name, urls in kwargs["trusted_issuers"].items()}
        meta = body["metadata"]
        others = [
            entry
            for entry in kwargs["account_jwks_uris"].get(meta["namespace"], [])
            if entry[1] != meta["name"]  # this account's own comes from its current body
        ]
        status = await reconcile(
            runtime, body, clients, trusted, others, fresh=first_create(kwargs)
        )
        patch.status.update(changed(body, status))

    @kopf.on.delete(
        GROUP, VERSION, PLURAL, id="service_account_deleted", backoff=BACKOFF, registry=registry
    )
    async def service_account_deleted(*, body: kopf.Body, **_: Any) -> None:
        await delete_record(runtime, Owner.of({**body, "kind": KIND_ACCOUNT}))
        meta = body["metadata"]
        runtime.forget(KIND_ACCOUNT, meta["namespace"], meta["name"])
