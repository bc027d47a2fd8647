"""OAuth2Client → credentials Secret (client namespace) + verification record (server namespace)."""

from __future__ import annotations

import json
from typing import Any

import kopf

from kubemint.api.meta import (
    GROUP,
    KIND_CLIENT,
    ROLE_CLIENT_CREDENTIALS,
    ROLE_CLIENT_VERIFICATION,
    VERSION,
    ObjectRef,
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
from kubemint.reconcile.oauth2clients import (
    REFUSED_CLIENT_ID,
    ClientContext,
    ClientSpec,
    check_client,
    claims_client_id,
    client_id_holder,
    client_jwks,
    credentials_data,
    verification_record,
    verification_secret_name,
)
from kubemint.reconcile.rotating_secret import generations_from_record, plan_secret
from kubemint.reconcile.signingkeys import key_use

PLURAL = "oauth2clients"
RECORD_FIELD = "client.json"
PENDING = ("nextSecretRotationAt", "previousSecretExpiresAt")


def verification_name(namespace: str, name: str) -> str:
    return verification_secret_name("client", namespace, name)


async def reconcile(
    runtime: Runtime,
    body: kopf.Body | dict[str, Any],
    signing_keys: dict[str, str],
    holder: ObjectRef | None,
    contested: bool = False,
) -> dict[str, Any]:
    settings, kube = runtime.settings, runtime.kube
    spec = ClientSpec.from_body(body)
    jwks_text = None
    if spec.jwks_secret_ref is not None:
        secret_name, key = spec.jwks_secret_ref
        jwks_text = (decoded(await kube.read_secret(spec.namespace, secret_name)) or {}).get(key)
    context = ClientContext(signing_keys, settings.namespace, jwks_text, holder, contested)
    outcome = check_client(spec, context)
    record_name = verification_name(spec.namespace, spec.name)

    async with runtime.lock(KIND_CLIENT, spec.namespace, spec.name):
        if outcome.reason in REFUSED_CLIENT_ID:
            # The client id is not this client's (another holds it, or it lies outside this
            # namespace): nothing may authenticate as it here.
            await kube.delete_secret(settings.namespace, record_name)
            return status_update(body, outcome, now(), {"clientId": spec.client_id})
        live = await kube.read_secret(spec.namespace, spec.secret_name)
        record = await kube.read_secret(settings.namespace, record_name)
        moment = now()
        plan = None
        if spec.uses_secret:
            presented = (decoded(live) or {}).get("client-secret")
            plan = plan_secret(
                presented,
                generations_from_record((decoded(record) or {}).get(RECORD_FIELD), "secrets"),
                spec.secret_policy,
                moment,
                what="client secret",
            )
        await kube.apply_secret(
            spec.namespace,
            spec.secret_name,
            credentials_data(spec, plan, settings.issuer, settings.token_url),
            labels={
                **spec.template_labels,
                **owner_labels(KIND_CLIENT, spec.namespace, spec.name, ROLE_CLIENT_CREDENTIALS),
            },
            annotations=spec.template_annotations,
            owner=body,
            live=live,
        )
        try:
            jwks = client_jwks(spec, context)
        except ValueError:
            jwks = None  # reported through `outcome`
        document = verification_record(spec, plan, jwks, body["metadata"]["uid"])
        await kube.apply_secret(
            settings.namespace,
            record_name,
            {RECORD_FIELD: json.dumps(document, sort_keys=True)},
            labels=owner_labels(KIND_CLIENT, spec.namespace, spec.name, ROLE_CLIENT_VERIFICATION),
            live=record,
        )
    post_events(body, plan.events if plan else ())
    return status_update(
        body,
        outcome,
        moment,
        {
            "clientId": spec.client_id,
            "secretName": spec.secret_name,
            "tokenEndpoint": settings.token_url,
            "issuer": settings.issuer,
            "secretRotatedAt": iso(plan.rotated_at) if plan else None,
            "nextSecretRotationAt": iso(plan.next_rotation_at) if plan else None,
            "previousSecretExpiresAt": iso(plan.previous_expires_at) if plan else None,
        },
    )


def pending(*, status: kopf.Status, **_: Any) -> bool:
    """Re-check while not Ready or while a rotation or an overlap is scheduled."""
    return needs_recheck(status, *PENDING)


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    settings = runtime.settings

    @kopf.index(GROUP, VERSION, PLURAL, id="client_ids", registry=registry)
    def client_ids(
        *, body: kopf.Body, meta: kopf.Meta, **_: Any
    ) -> dict[str, tuple[str, str, str]]:
        from kubemint.reconcile.oauth2clients import effective_client_id

        spec = body.get("spec") or {}
        if not claims_client_id(meta["namespace"], spec):
            return {}  # refused (ClientIdOutsideNamespace): it holds no id, blocks nobody
        client_id = effective_client_id(meta["namespace"], meta["name"], spec)
        return {client_id: (meta["creationTimestamp"], meta["namespace"], meta["name"])}

    @kopf.index(GROUP, VERSION, "signingkeys", id="signing_key_uses", registry=registry)
    def signing_key_uses(*, body: kopf.Body, meta: kopf.Meta, **_: Any) -> dict[str, str]:
        if meta["namespace"] != settings.namespace:
            return {}
        return {meta["name"]: key_use(body.get("spec") or {})}

    @reconciler(
        registry, PLURAL, id="oauth2_client", interval=settings.recheck_interval, when=pending
    )
    async def oauth2_client(*, body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
        keys = {name: next(iter(uses)) for name, uses in kwargs["signing_key_uses"].items()}
        claims = kwargs["client_ids"].get(ClientSpec.from_body(body).client_id, [])
        status = await reconcile(runtime, body, keys, *client_id_holder(claims))
        patch.status.update(changed(body, status))

    @kopf.on.delete(
        GROUP, VERSION, PLURAL, id="oauth2_client_deleted", backoff=BACKOFF, registry=registry
    )
    async def oauth2_client_deleted(*, meta: kopf.Meta, **_: Any) -> None:
        # The credentials Secret goes with its ownerReference; the verification record lives
        # in another namespace, where ownerReferences cannot point, so it is removed here.
        await runtime.kube.delete_secret(
            settings.namespace, verification_name(meta["namespace"], meta["name"])
        )
        runtime.forget(KIND_CLIENT, meta["namespace"], meta["name"])
