"""SigningKey → its key Secret (keys.json), rotation on schedule or on request, withdrawals
after a suspected compromise (Warning Events), status."""

from __future__ import annotations

import datetime
from typing import Any, cast

import kopf

from kubemint.api.meta import (
    ANNOTATION_ROTATE,
    KIND_SIGNING_KEY,
    ROLE_SIGNING_KEYS,
    Outcome,
)
from kubemint.api.records import (
    KeySet,
    Owner,
    RecordError,
    Withdrawal,
    decode_key_set,
    encode_keys,
    owner_annotations,
    owner_labels,
)
from kubemint.api.signingkey import SigningKeySpec, withdraw_request
from kubemint.controller.handlers import clientindex
from kubemint.controller.runtime import (
    Runtime,
    changed,
    invalid_spec,
    now,
    post_events,
    reconciler,
    status_update,
)
from kubemint.reconcile.ownership import secret_conflict
from kubemint.reconcile.signingkeys import (
    check_namespace,
    check_retention,
    check_schedule,
    check_withdrawal,
    merge_withdrawals,
    plan_rotation,
    status_time,
    withdrawal_refused,
)

PLURAL = "signingkeys"


def stored_keys(secret: dict[str, Any] | None) -> KeySet:
    """Keys from the Secret; unreadable content counts as none (a fresh key set is made)."""
    try:
        return decode_key_set(secret)
    except RecordError:
        return KeySet()


def status_withdrawals(status: dict[str, Any]) -> tuple[Withdrawal, ...]:
    """status.withdrawn as the operator wrote it (unreadable items are left out)."""
    found = []
    for item in status.get("withdrawn") or ():
        try:
            found.append(Withdrawal.from_json(item))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return tuple(found)


async def reconcile(
    runtime: Runtime, body: kopf.Body | dict[str, Any], lifetimes: dict[str, datetime.timedelta]
) -> dict[str, Any]:
    meta = body["metadata"]
    owner = Owner.of({**body, "kind": KIND_SIGNING_KEY})
    misplaced = check_namespace(owner.namespace, runtime.settings.namespace)
    if misplaced is not None:
        # Honoured only in the server namespace: elsewhere nothing is generated or written.
        return status_update(body, misplaced, now(), {})
    refused = invalid_spec(body, SigningKeySpec.from_body)
    if refused is not None:
        return refused
    spec = SigningKeySpec.from_body(body)
    invalid = check_schedule(spec)
    if invalid is not None:
        return status_update(body, invalid, now(), {})
    status = body.get("status") or {}
    annotations = meta.get("annotations") or {}
    try:
        withdraw, refused_withdrawal = withdraw_request(annotations), None
    except ValueError as exc:
        withdraw, refused_withdrawal = (), withdrawal_refused(exc)
    async with runtime.lock(KIND_SIGNING_KEY, owner.namespace, owner.name):
        live = await runtime.kube.read_secret(owner.namespace, spec.secret_name)
        conflict = secret_conflict(live, owner, "spec.secretName", spec.secret_name)
        if conflict is not None:
            return status_update(body, conflict, now(), {"secretName": spec.secret_name})
        moment = now()
        stored = stored_keys(live)
        # Off the event loop: generating (or reading) an RSA key takes seconds of CPU.
        plan = await runtime.off_loop(
            plan_rotation,
            spec,
            stored.keys,
            moment,
            manual_request=annotations.get(ANNOTATION_ROTATE),
            last_manual=status.get("lastManualRotation"),
            last_manual_at=status_time(status.get("lastManualRotationAt")),
            deferred_before=status_time(status.get("manualRotationDeferredUntil")),
            manual_interval=datetime.timedelta(seconds=runtime.settings.manual_rotation_interval),
            status_active_kid=(status.get("active") or {}).get("kid"),
            withdraw=withdraw,
            withdrawn_before=merge_withdrawals(stored.withdrawn, status_withdrawals(status)),
        )
        # The Secret first: status must never name a kid that is not stored yet.
        await runtime.kube.apply_secret(
            owner.namespace,
            spec.secret_name,
            encode_keys(plan.keys, plan.withdrawn),
            labels=owner_labels(owner, ROLE_SIGNING_KEYS),
            annotations=owner_annotations(owner),
            owner=body,
            live=live,
        )
    for reason, message in plan.warnings:  # before the fresh key's KeyGenerated
        kopf.warn(cast(kopf.Body, body), reason=reason, message=message)
    post_events(body, plan.events)
    outcome = (
        refused_withdrawal
        or check_withdrawal(plan)
        or check_retention(spec, lifetimes)
        or Outcome.ok(plan.summary())
    )
    return status_update(body, outcome, moment, {**plan.status(), "secretName": spec.secret_name})


def lifetimes_for(name: str, index: clientindex.Index) -> dict[str, datetime.timedelta]:
    """Client ("namespace/name") → token lifetime, of the clients signing with key `name`."""
    return {ref: datetime.timedelta(seconds=s) for ref, s in clientindex.lifetimes(index, name)}


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    settings = runtime.settings

    @reconciler(
        registry,
        PLURAL,
        id="signing_key",
        interval=settings.recheck_interval,
        slots=runtime.slots,
        observer=runtime.observer,
    )
    async def signing_key(*, body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
        lifetimes = lifetimes_for(body["metadata"]["name"], kwargs[clientindex.INDEX])
        patch.status.update(changed(body, await reconcile(runtime, body, lifetimes)))
