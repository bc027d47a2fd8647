"""`kubemint can-i`: the token endpoint's decision as a dry run, with why.

The view is built by the token server's own builder (`build_snapshot`) from the objects the
admin reads, and the decision is `kubemint.oauth.token_endpoint.grant_for`, the function the
endpoint calls once a caller has authenticated; `decide` reports each rule it weighed. What a
dry run cannot do is check a credential: the caller is the client (or kubemint ServiceAccount)
named, as if its credential were right. Everything after that, and the checks that do not
depend on the credential (the client exists and holds its id, the account exists, is enabled
and uses the client; the client is not disabled; its signing key is ready), answer with the
same error code and description the endpoint gives, and the audit log's reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubemint.api.meta import KIND_ACCESS_RULE, KIND_ACCOUNT, KIND_CLIENT, KIND_SIGNING_KEY
from kubemint.api.signingkey import withdrawn_by
from kubemint.oauth.claim_sources import NONE
from kubemint.oauth.client_auth import FAILED, Caller
from kubemint.oauth.errors import (
    InvalidClient,
    OAuth2Error,
    TemporarilyUnavailable,
    UnauthorizedClient,
)
from kubemint.oauth.policy import GRANTS, RuleOutcome
from kubemint.oauth.token_endpoint import CLIENT_CREDENTIALS, grant_for
from kubemint.store.snapshot import AccountView, ClientView, Snapshot, build_snapshot

Body = dict[str, Any]


@dataclass(frozen=True)
class Question:
    """Who asks (a client id or NAMESPACE/NAME of an OAuth2Client; or a kubemint
    ServiceAccount NAMESPACE/NAME, through `client` or its only client) for what, and the
    request attributes a rule's `when` sees."""

    client: str | None = None
    account: str | None = None
    audience: str | None = None
    scope: str | None = None
    grant_type: str = CLIENT_CREDENTIALS
    source: str = ""
    claims: Mapping[str, Any] = field(default_factory=dict)
    claims_source: str = NONE

    def form(self) -> dict[str, str]:
        form = {"grant_type": self.grant_type}
        if self.audience:
            form["audience"] = self.audience
        if self.scope is not None:
            form["scope"] = self.scope
        return form


@dataclass
class RuleLine:
    rule: str  # namespace/name
    outcome: str  # grants, subject not listed, condition false, grants nothing
    scopes: list[str]
    when: str | None = None
    detail: str = ""

    def json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


@dataclass
class Answer:
    allowed: bool
    client_id: str = ""
    subject: str = ""
    audience: str = ""
    scopes: list[str] = field(default_factory=list)  # granted
    error: str = ""
    description: str = ""
    reason: str = ""  # the audit log's
    check: str = ""  # which check said no
    rules: list[RuleLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        body = {k: v for k, v in self.__dict__.items() if k != "rules"}
        body["rules"] = [r.json() for r in self.rules]
        return body


def snapshot_of(objects: Mapping[str, list[Body]], records: list[Body], **kw: Any) -> Snapshot:
    """The token server's view of these objects (no Secrets: no credential, no key)."""
    return build_snapshot(
        clients=objects.get(KIND_CLIENT, []),
        accounts=objects.get(KIND_ACCOUNT, []),
        rules=objects.get(KIND_ACCESS_RULE, []),
        signing_keys=objects.get(KIND_SIGNING_KEY, []),
        trusted_issuers=objects.get("TrustedIssuer", []),
        audience_records=records,
        secrets=[],
        **kw,
    )


def ask(question: Question, snapshot: Snapshot, objects: Mapping[str, list[Body]]) -> Answer:
    answer = Answer(allowed=False)
    answer.notes.append("credentials are not checked: the caller is assumed to present its own")
    trace: list[RuleOutcome] = []
    try:
        caller = _caller(question, snapshot, objects, answer)
        answer.client_id, answer.subject = caller.client.client_id, caller.subject
        answer.check = "grant"
        try:
            grant = grant_for(caller, question.form(), question.source, snapshot, trace=trace)
        finally:
            answer.audience = _audience(caller, question)
            answer.rules = _rule_lines(trace, answer.audience, snapshot, objects)
        answer.check = "signing key"
        _key_ready(caller.client, objects)
    except OAuth2Error as error:
        answer.error, answer.description, answer.reason = (
            error.error,
            error.description,
            error.reason,
        )
        return answer
    answer.allowed, answer.check = True, ""
    answer.audience, answer.scopes = grant.audience, list(grant.scopes)
    return answer


def _caller(
    question: Question, snapshot: Snapshot, objects: Mapping[str, list[Body]], answer: Answer
) -> Caller:
    """The caller as `authenticate` finds it once the credential is right (these checks do
    not depend on the credential; their errors are the endpoint's)."""
    answer.check = "client"
    account: AccountView | None = None
    if question.account:
        account = _account(question.account, snapshot, objects)
        name = question.client or _only_client(account)
        client = _client(
            name if "/" in name else f"{account.ref.namespace}/{name}", snapshot, objects
        )
        answer.check = "account"
        if client.ref.namespace != account.ref.namespace or client.ref.name not in account.clients:
            raise InvalidClient(
                FAILED,
                reason=f"wrong username or app password ({account.ref} does not use {client.ref})",
            )
        if account.disabled:
            raise InvalidClient(
                FAILED, reason=f"wrong username or app password ({account.ref} is disabled)"
            )
        caller = Caller(client, "app_password", account=account)
    elif question.client:
        client = _client(question.client, snapshot, objects)
        caller = Caller(client, client.auth_method)
    else:
        raise InvalidClient("client authentication required")
    if question.claims or question.claims_source != NONE:
        caller = Caller(
            caller.client,
            caller.method,
            account=caller.account,
            claims=dict(question.claims),
            claims_source=question.claims_source,
        )
    answer.check = "client"
    if client.disabled:
        raise UnauthorizedClient("the client is disabled")
    return caller


def _client(name: str, snapshot: Snapshot, objects: Mapping[str, list[Body]]) -> ClientView:
    found = snapshot.clients.get(name)
    if found is None and "/" in name:
        namespace, _, short = name.partition("/")
        found = next(
            (
                c
                for c in snapshot.clients.values()
                if (c.ref.namespace, c.ref.name) == (namespace, short)
            ),
            None,
        )
        if found is None and _body(objects, KIND_CLIENT, namespace, short) is not None:
            why = _not_ready(_body(objects, KIND_CLIENT, namespace, short))
            raise InvalidClient(FAILED, reason=f"unknown client ({name} is not in the view: {why})")
    if found is None:
        raise InvalidClient(
            FAILED, reason=f"unknown client ({name}: no such client id or OAuth2Client)"
        )
    return found


def _account(name: str, snapshot: Snapshot, objects: Mapping[str, list[Body]]) -> AccountView:
    namespace, _, short = name.partition("/")
    if not short:
        raise InvalidClient(
            FAILED, reason=f"wrong username or app password (give NAMESPACE/NAME, not {name})"
        )
    found = snapshot.accounts.get((namespace, short))
    if found is None:
        body = _body(objects, KIND_ACCOUNT, namespace, short)
        why = _not_ready(body) if body is not None else "no such ServiceAccount"
        raise InvalidClient(FAILED, reason=f"wrong username or app password ({name}: {why})")
    return found


def _only_client(account: AccountView) -> str:
    if len(account.clients) != 1:
        raise InvalidClient(
            FAILED,
            reason=f"{account.ref} uses {len(account.clients)} clients: name one with --client",
        )
    return next(iter(account.clients))


def _audience(caller: Caller, question: Question) -> str:
    allowed = caller.client.audiences
    return question.audience or (allowed[0] if len(allowed) == 1 else "")


def _rule_lines(
    trace: list[RuleOutcome], audience: str, snapshot: Snapshot, objects: Mapping[str, list[Body]]
) -> list[RuleLine]:
    """Each rule `decide` weighed, then the rules for the audience that grant nothing (their
    namespace does not own it, their `when` does not compile: their status says)."""
    lines = [
        RuleLine(
            str(t.rule.ref.namespace + "/" + t.rule.ref.name),
            t.outcome,
            sorted(t.rule.scopes),
            t.rule.condition.source if t.rule.condition is not None else None,
        )
        for t in trace
    ]
    weighed = {(r.ref.namespace, r.ref.name) for r in snapshot.rules.get(audience, ())}
    for body in objects.get(KIND_ACCESS_RULE, []):
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        ref = (str(meta.get("namespace")), str(meta.get("name")))
        if audience and spec.get("audience") == audience and ref not in weighed:
            lines.append(
                RuleLine(
                    f"{ref[0]}/{ref[1]}",
                    "grants nothing",
                    sorted(spec.get("scopes") or []),
                    spec.get("when"),
                    _not_ready(body),
                )
            )
    return lines


def _key_ready(client: ClientView, objects: Mapping[str, list[Body]]) -> None:
    """The endpoint's last check, from the SigningKey's status (an admin reads no key
    Secret): a key with an active kid that is not withdrawn signs."""
    for name in (client.signing_key, client.encryption_key):
        if not name:
            continue
        body = next(
            (b for b in objects.get(KIND_SIGNING_KEY, []) if b["metadata"]["name"] == name), None
        )
        kid = ((body or {}).get("status") or {}).get("active", {}).get("kid")
        if body is None or not kid or kid in withdrawn_by(body):
            which = "signing" if name == client.signing_key else "encryption"
            raise TemporarilyUnavailable(
                f"the client's {which} key is not available yet",
                reason=f"SigningKey {name}: {'no active key' if body else 'not found'}",
            )


def _body(objects: Mapping[str, list[Body]], kind: str, namespace: str, name: str) -> Body | None:
    return next(
        (
            b
            for b in objects.get(kind, [])
            if (b.get("metadata") or {}).get("namespace") == namespace
            and (b.get("metadata") or {}).get("name") == name
        ),
        None,
    )


def _not_ready(body: Body | None) -> str:
    """What the object's Ready condition says, when it is not True."""
    for condition in ((body or {}).get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            if condition.get("status") == "True":
                return "Ready"
            return f"{condition.get('reason', '')}: {condition.get('message', '')}".strip(": ")
    return "no Ready condition yet (the operator has not reconciled it)"


__all__ = ["GRANTS", "Answer", "Question", "ask", "snapshot_of"]
