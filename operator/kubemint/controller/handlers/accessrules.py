"""AccessRule → the audience's ownership record + status: ownership, `when`, local subjects.

Each reconcile decides the audience's owner from its record and the live claims (kopf index),
writes the record when the decision changes it (serialised per audience), and reports only
what concerns the rule's own namespace. The record watcher re-runs every rule of an audience
whose record changed, so statuses follow ownership.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from kubemint.api.accessrule import RuleClaim, RuleSpec, releasing
from kubemint.api.audiences import AudienceOwnership, decide
from kubemint.api.meta import (
    GROUP,
    KIND_ACCOUNT,
    VERSION,
    ObjectRef,
    parse_time,
    set_condition,
)
from kubemint.controller.audiences import Records, RecordWatcher
from kubemint.controller.handlers import clientindex
from kubemint.controller.runtime import (
    Runtime,
    changed,
    invalid_spec,
    now,
    reconciler,
    status_update,
)
from kubemint.reconcile.accessrules import (
    audience_owner_status,
    check_rule,
    local_subjects,
    subjects_outcome,
    unresolved_subjects,
)

PLURAL = "accessrules"


def reconcile(
    body: kopf.Body | dict[str, Any],
    ownership: AudienceOwnership,
    existing: frozenset[ObjectRef],
) -> dict[str, Any]:
    refused = invalid_spec(body, RuleSpec.from_body)
    if refused is not None:
        return refused
    spec = RuleSpec.from_body(body)
    missing = unresolved_subjects(spec, existing)
    moment = now()
    status = status_update(
        body,
        check_rule(spec, ownership),
        moment,
        {
            "audienceOwner": audience_owner_status(spec, ownership),
            "unresolvedSubjects": missing or None,
        },
    )
    status["conditions"] = set_condition(
        status["conditions"],
        "SubjectsResolved",
        subjects_outcome(spec, existing),
        body["metadata"].get("generation"),
        moment,
    )
    return status


def claims_of(spec: RuleSpec, created: str, indexed: Iterable[RuleClaim]) -> list[RuleClaim]:
    """The audience's claims with this rule's own as it is now (the index may lag a moment)."""
    own = spec.claim(parse_time(created))
    return [c for c in indexed if (c.namespace, c.name) != (spec.namespace, spec.name)] + [own]


async def _stop(watching: list[tuple[asyncio.Event, asyncio.Task[None]]]) -> None:
    while watching:
        stop, task = watching.pop()
        stop.set()
        await task


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    settings = runtime.settings
    records = Records(runtime.kube, settings.namespace)
    live: dict[str, Mapping[str, Iterable[RuleClaim]]] = {}
    watching: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    @kopf.index(GROUP, VERSION, PLURAL, id="audience_claims", registry=registry)
    async def audience_claims(
        *, body: kopf.Body, meta: kopf.Meta, **_: Any
    ) -> dict[str, RuleClaim]:
        # From the raw fields (as RuleSpec.claim would): a spec that does not parse still
        # claims its audience, and an index must never fail on one object's content.
        audience = (body.get("spec") or {}).get("audience")
        if not audience or not isinstance(audience, str):
            return {}
        created = parse_time(meta["creationTimestamp"])
        released = releasing(meta.get("annotations"))
        claim = RuleClaim(meta["namespace"], meta["name"], created, released)
        return {audience: claim}

    # Keyed by the object itself: a rule looks up its few subjects instead of copying every
    # client and account of the cluster into a set on each reconcile (of each of 500 rules).
    # Clients are in the shared client index (clientindex), under the same kind of key.
    @kopf.index(GROUP, VERSION, "serviceaccounts", id="account_refs", registry=registry)
    async def account_refs(*, meta: kopf.Meta, **_: Any) -> dict[ObjectRef, bool]:
        return {ObjectRef(KIND_ACCOUNT, meta["namespace"], meta["name"]): True}

    @kopf.on.startup(registry=registry)
    async def watch_records(**kwargs: Any) -> None:
        # kopf's indexes are live mappings: the watcher reads who names an audience from it.
        live["index"] = kwargs["audience_claims"]
        await _stop(watching)  # a previous leadership term's watcher, if kopf was cancelled
        stop = asyncio.Event()
        watcher = RecordWatcher(
            runtime.kube, settings.namespace, lambda: live["index"], records.up_to_date
        )
        watching.append((stop, asyncio.create_task(watcher.run(stop))))

    @kopf.on.cleanup(registry=registry)
    async def stop_watching(**_: Any) -> None:
        await _stop(watching)

    def rule_needs_recheck(*, status: kopf.Status, **_: Any) -> bool:
        # Never handled (no conditions): no timer yet (see needs_recheck).
        return any(c.get("status") != "True" for c in status.get("conditions") or [])

    @reconciler(
        registry,
        PLURAL,
        id="access_rule",
        interval=settings.recheck_interval,
        slots=runtime.slots,
        observer=runtime.observer,
        when=rule_needs_recheck,
    )
    async def access_rule(
        *, body: kopf.Body, meta: kopf.Meta, patch: kopf.Patch, **kwargs: Any
    ) -> None:
        refused = invalid_spec(body, RuleSpec.from_body)
        if refused is not None:
            patch.status.update(changed(body, refused))
            return
        spec = RuleSpec.from_body(body)
        claims = claims_of(
            spec, meta["creationTimestamp"], kwargs["audience_claims"].get(spec.audience, [])
        )
        async with runtime.lock("Audience", "", spec.audience):
            current, record = await records.read(spec.audience)
            ownership = decide(spec.audience, settings.audience_ownership, current, claims)
            await records.apply(current, record, ownership, by=(spec.namespace, spec.name))
        indexed = (kwargs[clientindex.INDEX], kwargs["account_refs"])
        existing = frozenset(s for s in local_subjects(spec) if any(s in i for i in indexed))
        patch.status.update(changed(body, reconcile(body, ownership, existing)))
