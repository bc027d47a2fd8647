"""AccessRule → status only: audience ownership, `when` compilation, unresolved subjects."""

from __future__ import annotations

from typing import Any

import kopf

from kubemint.api.accessrule import RuleClaim, RuleSpec, audience_owner
from kubemint.api.meta import (
    GROUP,
    KIND_ACCOUNT,
    KIND_CLIENT,
    VERSION,
    ObjectRef,
    Outcome,
    parse_time,
    set_condition,
)
from kubemint.controller.runtime import (
    Runtime,
    changed,
    invalid_spec,
    now,
    reconciler,
    status_update,
)
from kubemint.reconcile.accessrules import (
    check_rule,
    unresolved_subjects,
)

PLURAL = "accessrules"


def reconcile(
    body: kopf.Body | dict[str, Any],
    claims: list[RuleClaim],
    existing: frozenset[ObjectRef],
) -> dict[str, Any]:
    refused = invalid_spec(body, RuleSpec.from_body)
    if refused is not None:
        return refused
    spec = RuleSpec.from_body(body)
    outcome = check_rule(spec, audience_owner(claims))
    missing = unresolved_subjects(spec, existing)
    moment = now()
    status = status_update(
        body,
        outcome,
        moment,
        {"audienceOwner": audience_owner(claims), "unresolvedSubjects": missing or None},
    )
    subjects = (
        Outcome(False, "SubjectNotFound", f"spec.subjects: {', '.join(missing)} do not exist")
        if missing
        else Outcome(True, "AllFound", "every subject exists")
    )
    status["conditions"] = set_condition(
        status["conditions"],
        "SubjectsResolved",
        subjects,
        body["metadata"].get("generation"),
        moment,
    )
    return status


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    settings = runtime.settings

    @kopf.index(GROUP, VERSION, PLURAL, id="audience_claims", registry=registry)
    def audience_claims(*, body: kopf.Body, meta: kopf.Meta, **_: Any) -> dict[str, RuleClaim]:
        audience = (body.get("spec") or {}).get("audience")
        if not audience:
            return {}
        created = parse_time(meta["creationTimestamp"])
        return {audience: RuleClaim(meta["namespace"], meta["name"], created)}

    @kopf.index(GROUP, VERSION, "oauth2clients", id="client_refs", registry=registry)
    def client_refs(*, meta: kopf.Meta, **_: Any) -> dict[str, ObjectRef]:
        return {"all": ObjectRef(KIND_CLIENT, meta["namespace"], meta["name"])}

    @kopf.index(GROUP, VERSION, "serviceaccounts", id="account_refs", registry=registry)
    def account_refs(*, meta: kopf.Meta, **_: Any) -> dict[str, ObjectRef]:
        return {"all": ObjectRef(KIND_ACCOUNT, meta["namespace"], meta["name"])}

    def rule_needs_recheck(*, status: kopf.Status, **_: Any) -> bool:
        return any(c.get("status") != "True" for c in status.get("conditions") or [{}])

    @reconciler(
        registry,
        PLURAL,
        id="access_rule",
        interval=settings.recheck_interval,
        when=rule_needs_recheck,
    )
    async def access_rule(*, body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
        audience = (body.get("spec") or {}).get("audience", "")
        refs = [*kwargs["client_refs"].get("all", []), *kwargs["account_refs"].get("all", [])]
        claims = list(kwargs["audience_claims"].get(audience, []))
        status = reconcile(body, claims, frozenset(refs))
        patch.status.update(changed(body, status))
