"""SigningKey → its private-key Secret (keys.json), rotation on schedule or on request, status."""

from __future__ import annotations

import datetime
import json
from typing import Any

import kopf

from kubemint.api.meta import (
    ANNOTATION_ROTATE,
    GROUP,
    KIND_SIGNING_KEY,
    ROLE_SIGNING_KEYS,
    VERSION,
    Outcome,
)
from kubemint.controller.kube import decoded
from kubemint.controller.runtime import (
    Runtime,
    changed,
    now,
    owner_labels,
    post_events,
    reconciler,
    status_update,
)
from kubemint.reconcile.signingkeys import (
    KEYS_FIELD,
    SigningKeySpec,
    StoredKey,
    check_retention,
    plan_rotation,
)

PLURAL = "signingkeys"


def stored_keys(data: dict[str, str] | None) -> tuple[StoredKey, ...]:
    """Keys from the Secret; unreadable content counts as none (a fresh key set is made)."""
    try:
        document = json.loads((data or {}).get(KEYS_FIELD, "{}"))
        return tuple(StoredKey.from_json(k) for k in document.get("keys", []))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ()


async def reconcile(
    runtime: Runtime, body: kopf.Body | dict[str, Any], lifetimes: dict[str, datetime.timedelta]
) -> dict[str, Any]:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec = SigningKeySpec.from_body(body)
    async with runtime.lock(KIND_SIGNING_KEY, namespace, name):
        live = await runtime.kube.read_secret(namespace, spec.secret_name)
        moment = now()
        plan = plan_rotation(
            spec,
            stored_keys(decoded(live)),
            moment,
            manual_request=(meta.get("annotations") or {}).get(ANNOTATION_ROTATE),
            last_manual=(body.get("status") or {}).get("lastManualRotation"),
        )
        # The Secret first: status must never name a kid that is not stored yet.
        await runtime.kube.apply_secret(
            namespace,
            spec.secret_name,
            {KEYS_FIELD: json.dumps({"keys": [k.to_json() for k in plan.keys]})},
            labels=owner_labels(KIND_SIGNING_KEY, namespace, name, ROLE_SIGNING_KEYS),
            owner=body,
            live=live,
        )
    post_events(body, plan.events)
    outcome = check_retention(spec, lifetimes) or Outcome.ok(
        f"active key {plan.active.material.kid}, next rotation at {plan.status()['nextRotationAt']}"
    )
    if namespace != runtime.settings.namespace:
        outcome = Outcome(
            False,
            "WrongNamespace",
            f"metadata.namespace: SigningKeys must live in the token server's namespace "
            f"{runtime.settings.namespace}",
        )
    return status_update(body, outcome, moment, {**plan.status(), "secretName": spec.secret_name})


def lifetimes_for(name: str, index: kopf.Index[str, Any]) -> dict[str, datetime.timedelta]:
    return {ref: datetime.timedelta(seconds=s) for ref, s in index.get(name, [])}


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    settings = runtime.settings

    @kopf.index(GROUP, VERSION, "oauth2clients", id="client_lifetimes", registry=registry)
    def client_lifetimes(*, body: kopf.Body, **_: Any) -> dict[str, tuple[str, float]]:
        """SigningKey name → (client, token lifetime seconds), for the retention check."""
        from kubemint.reconcile.oauth2clients import ClientSpec

        try:
            spec = ClientSpec.from_body(body)
        except (ValueError, KeyError):
            return {}
        return {
            spec.signing_key: (
                f"{spec.namespace}/{spec.name}",
                spec.token_lifetime.total_seconds(),
            )
        }

    @reconciler(registry, PLURAL, id="signing_key", interval=settings.recheck_interval)
    async def signing_key(*, body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
        lifetimes = lifetimes_for(body["metadata"]["name"], kwargs["client_lifetimes"])
        patch.status.update(changed(body, await reconcile(runtime, body, lifetimes)))
