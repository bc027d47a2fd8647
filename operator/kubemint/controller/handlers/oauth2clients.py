"""OAuth2Client → credentials Secret (client namespace) + verification record (server namespace)."""

from __future__ import annotations

import functools
from typing import Any

import kopf

from kubemint.api.meta import (
    GROUP,
    KIND_CLIENT,
    ROLE_CLIENT_CREDENTIALS,
    VERSION,
    ObjectRef,
    Outcome,
)
from kubemint.api.oauth2client import (
    ClientSpec,
    client_id_holder,
    effective_client_id,
)
from kubemint.api.records import (
    ClientRecord,
    Owner,
    decode_or_none,
    encode,
    owner_annotations,
    owner_labels,
    record_name,
    record_role,
    secret_text,
)
from kubemint.api.signingkey import key_use
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
from kubemint.reconcile.oauth2clients import (
    REFUSED_CLIENT_ID,
    ClientContext,
    check_client,
    client_jwks,
    credentials_data,
    secret_policy,
    verification_record,
)
from kubemint.reconcile.ownership import record_conflict, secret_conflict
from kubemint.reconcile.rotating_secret import plan_secret

PLURAL = "oauth2clients"
PENDING = ("nextSecretRotationAt", "previousSecretExpiresAt")


async def reconcile(
    runtime: Runtime,
    body: kopf.Body | dict[str, Any],
    signing_keys: dict[str, str],
    holder: ObjectRef | None,
    contested: bool = False,
    fresh: bool = False,
) -> dict[str, Any]:
    """The client's status after making its two Secrets match it. `fresh`: a just-created
    client's first attempt, whose Secrets cannot exist yet: they are created without being
    read first (3 GETs fewer per new client, a third of its API requests); if anything is
    there after all, the create fails and the client is reconciled from what is there."""
    settings, kube = runtime.settings, runtime.kube
    refused = invalid_spec(body, ClientSpec.from_body)
    if refused is not None:
        return refused
    spec = ClientSpec.from_body(body)
    owner = Owner.of({**body, "kind": KIND_CLIENT})
    jwks_text = None
    if spec.jwks_secret_ref is not None:
        secret_name, key = spec.jwks_secret_ref
        jwks_text = (decoded(await kube.read_secret(spec.namespace, secret_name)) or {}).get(key)
    context = ClientContext(signing_keys, settings.namespace, jwks_text, holder, contested)
    outcome = check_client(spec, context)
    fields = {"clientId": spec.client_id}

    async with runtime.lock(KIND_CLIENT, spec.namespace, spec.name):
        status, events = await create_or_converge(
            functools.partial(_converge, runtime, body, spec, owner, outcome, context, fields),
            fresh,
        )
    post_events(body, events)
    return status


async def _converge(
    runtime: Runtime,
    body: kopf.Body | dict[str, Any],
    spec: ClientSpec,
    owner: Owner,
    outcome: Outcome,
    context: ClientContext,
    fields: dict[str, Any],
    *,
    known_absent: bool,
) -> tuple[dict[str, Any], tuple[tuple[str, str], ...]]:
    """Write both Secrets (under the client's lock); the status and the Events to post.
    `known_absent`: neither Secret is read, both are created (AlreadyExists if one is there)."""
    settings, kube = runtime.settings, runtime.kube
    name = record_name(KIND_CLIENT, owner.uid)
    live_record = None if known_absent else await kube.read_secret(settings.namespace, name)
    if live_record is None and not known_absent:
        await remove_legacy_record(runtime, owner)
    if outcome.reason in REFUSED_CLIENT_ID:
        # The client id is not this client's (another holds it, or it lies outside this
        # namespace): nothing may authenticate as it here.
        await delete_record(runtime, owner, live_record)
        return status_update(body, outcome, now(), fields), ()
    live = None if known_absent else await kube.read_secret(spec.namespace, spec.secret_name)
    conflict = secret_conflict(
        live, owner, "spec.secret.name", spec.secret_name
    ) or record_conflict(live_record, owner, settings.namespace, name)
    if conflict is not None:
        return status_update(body, conflict, now(), fields), ()
    moment = now()
    plan = None
    if spec.uses_secret:
        stored = decode_or_none(live_record)
        plan = plan_secret(
            secret_text(live).get("client-secret") if live else None,
            stored.secrets if isinstance(stored, ClientRecord) else (),
            secret_policy(spec),
            moment,
            what="client secret",
        )
    await kube.apply_secret(
        spec.namespace,
        spec.secret_name,
        credentials_data(spec, plan, settings.issuer, settings.token_url),
        labels={**spec.template_labels, **owner_labels(owner, ROLE_CLIENT_CREDENTIALS)},
        annotations={**spec.template_annotations, **owner_annotations(owner)},
        owner=body,
        live=live,
    )
    try:
        jwks = client_jwks(spec, context)
    except ValueError:
        jwks = None  # reported through `outcome`
    await kube.apply_secret(
        settings.namespace,
        name,
        encode(verification_record(spec, plan, jwks, owner)),
        labels=owner_labels(owner, record_role(KIND_CLIENT)),
        annotations=owner_annotations(owner),
        live=live_record,
    )
    status = status_update(
        body,
        outcome,
        moment,
        {
            **fields,
            "secretName": spec.secret_name,
            "tokenEndpoint": settings.token_url,
            "issuer": settings.issuer,
            "secretRotatedAt": iso(plan.rotated_at) if plan else None,
            "nextSecretRotationAt": iso(plan.next_rotation_at) if plan else None,
            "previousSecretExpiresAt": iso(plan.previous_expires_at) if plan else None,
        },
    )
    return status, plan.events if plan else ()


def pending(*, status: kopf.Status, **_: Any) -> bool:
    """Re-check while not Ready or while a rotation or an overlap is scheduled."""
    return needs_recheck(status, *PENDING)


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    settings = runtime.settings

    @kopf.index(GROUP, VERSION, "signingkeys", id="signing_key_uses", registry=registry)
    async def signing_key_uses(*, body: kopf.Body, meta: kopf.Meta, **_: Any) -> dict[str, str]:
        if meta["namespace"] != settings.namespace:
            return {}
        return {meta["name"]: key_use(body.get("spec") or {})}

    @reconciler(
        registry,
        PLURAL,
        id="oauth2_client",
        interval=settings.recheck_interval,
        slots=runtime.slots,
        observer=runtime.observer,
        when=pending,
    )
    async def oauth2_client(*, body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
        keys = {name: next(iter(uses)) for name, uses in kwargs["signing_key_uses"].items()}
        meta = body["metadata"]
        client_id = effective_client_id(meta["namespace"], meta["name"], body.get("spec") or {})
        claims = clientindex.claimants(kwargs[clientindex.INDEX], client_id)
        status = await reconcile(
            runtime, body, keys, *client_id_holder(claims), fresh=first_create(kwargs)
        )
        patch.status.update(changed(body, status))

    @kopf.on.delete(
        GROUP, VERSION, PLURAL, id="oauth2_client_deleted", backoff=BACKOFF, registry=registry
    )
    async def oauth2_client_deleted(*, body: kopf.Body, **_: Any) -> None:
        # The credentials Secret goes with its ownerReference; the verification record lives
        # in another namespace, where ownerReferences cannot point, so it is removed here.
        await delete_record(runtime, Owner.of({**body, "kind": KIND_CLIENT}))
        meta = body["metadata"]
        runtime.forget(KIND_CLIENT, meta["namespace"], meta["name"])
