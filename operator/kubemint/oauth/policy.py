"""Which scopes a caller gets for an audience: requested ∩ client scopes ∩ AccessRule grants.

Default deny: without an AccessRule (in the namespace that owns the audience) naming the
subject, nothing is issued. Requested scopes beyond what is allowed are an `invalid_scope`
error, never silently dropped; no scope requested (or `scope=` without a value, RFC 6749
§3.2) means everything allowed (authentik). A rule that grants no scope grants an
audience-only token. A rule's `when` sees the presented claims as `claims` only when a
cluster-trusted source verified them (`kubemint.oauth.claim_sources`).

An account's `spec.claims` are its own assertions: they reach tokens for an audience owned by
the account's namespace, and otherwise only the names the matching rules list in
`spec.accountClaims` (the audience owner decides what its API is told).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from kubemint.oauth.claim_sources import WhenInputs, when_inputs
from kubemint.oauth.client_auth import Caller
from kubemint.oauth.errors import (
    AccessDenied,
    InvalidScope,
    InvalidTarget,
    TemporarilyUnavailable,
)
from kubemint.policy.expressions import EvaluationUnavailable
from kubemint.store.snapshot import RuleView, Snapshot

MAX_SCOPES = 64
# What `decide` found for each rule of the audience (its `trace`, for `kubemint can-i`).
NOT_A_SUBJECT = "subject not listed"
CONDITION_FALSE = "condition false"
GRANTS = "grants"


@dataclass(frozen=True)
class Grant:
    audience: str
    scopes: tuple[str, ...]  # sorted
    # Which of the account's spec.claims the token may carry; None: all (the account's own
    # namespace owns the audience). Empty for clients, which have no claims.
    account_claims: frozenset[str] | None = frozenset()


@dataclass(frozen=True)
class RuleOutcome:
    """One rule as `decide` weighed it: whether it applied to this request, and what it
    grants (its scopes; the client's `spec.scopes` bound them afterwards)."""

    rule: RuleView
    outcome: str  # NOT_A_SUBJECT, CONDITION_FALSE or GRANTS


def requested_scopes(raw: str | None) -> set[str] | None:
    """RFC 6749 §3.3 scope parameter; None when absent or sent without a value (§3.2)."""
    if not raw:
        return None
    scopes = set(raw.split())
    if not scopes:
        raise InvalidScope("malformed scope: name at least one scope, or omit the parameter")
    if len(scopes) > MAX_SCOPES:
        raise InvalidScope(f"at most {MAX_SCOPES} scopes per request")
    return scopes


def choose_audience(caller: Caller, requested: Sequence[str]) -> str:
    """`audience` / RFC 8707 `resource`; a client with one audience may omit it."""
    allowed = caller.client.audiences
    if not requested:
        if len(allowed) == 1:
            return allowed[0]
        raise InvalidTarget("audience is required: this client may request several")
    if len(set(requested)) > 1:
        raise InvalidTarget("request one audience per token")
    audience = requested[0]
    if audience not in allowed:
        raise InvalidTarget("the client may not request this audience")
    return audience


def decide(
    caller: Caller,
    snapshot: Snapshot,
    audience: str,
    scopes: set[str] | None,
    request_context: Callable[[], Mapping[str, Any]],
    trace: list[RuleOutcome] | None = None,
) -> Grant:
    """The scopes to issue, or the OAuth error explaining why not.

    `trace`, when given, receives each rule of the audience with what it counted for: the
    dry run (`kubemint can-i`) explains the decision with it, so both answer from this code.

    `request_context` is called only when a matching rule has a `when` condition. A
    condition that cannot be evaluated within its budget (see kubemint.policy.sandbox) fails
    this request with temporarily_unavailable: neither granting nor silently denying.
    """
    subject = caller.subject_ref
    granted: set[str] = set()
    claim_names: set[str] | None = set()
    matched = False
    inputs: WhenInputs | None = None
    for rule in snapshot.rules.get(audience, ()):
        if subject not in rule.subjects:
            if trace is not None:
                trace.append(RuleOutcome(rule, NOT_A_SUBJECT))
            continue
        if rule.condition is not None:
            if inputs is None:
                inputs = when_inputs(caller.claims_source, caller.claims, request_context())
            try:
                holds = rule.condition.allows(
                    inputs.request,
                    inputs.claims,
                    tenant_claims=inputs.tenant_claims,
                    owner=rule.ref.namespace,
                )
            except EvaluationUnavailable as exc:
                raise TemporarilyUnavailable(
                    "an AccessRule condition could not be evaluated in time; retry later",
                    retry_after=1,
                    reason=f"{rule.ref} spec.when not evaluated: {exc.reason}",
                ) from None
            if not holds:
                if trace is not None:
                    trace.append(RuleOutcome(rule, CONDITION_FALSE))
                continue
        if trace is not None:
            trace.append(RuleOutcome(rule, GRANTS))
        matched = True
        granted |= rule.scopes
        if caller.account is not None and claim_names is not None:
            own = rule.ref.namespace == caller.account.ref.namespace
            claim_names = None if own else claim_names | rule.account_claims
    if not matched:
        raise AccessDenied(f"no AccessRule grants {caller.subject} access to this audience")
    claims = None if claim_names is None else frozenset(claim_names)
    allowed = granted & caller.client.scopes
    if scopes is None:
        return Grant(audience, tuple(sorted(allowed)), claims)
    beyond = scopes - allowed
    if beyond:
        raise InvalidScope(
            f"scope not allowed: {' '.join(sorted(beyond))}",
            reason=_beyond_reason(beyond, caller.client.scopes | granted),
        )
    return Grant(audience, tuple(sorted(scopes)), claims)


def _beyond_reason(beyond: Set[str], known: Set[str]) -> str:
    """The audit log's reason: names only scopes some client or rule defines (the caller
    could have put anything, a token even, into `scope`)."""
    named = sorted(beyond & known)
    unknown = len(beyond) - len(named)
    parts = named + ([f"{unknown} unknown"] if unknown else [])
    return "scope not allowed: " + ", ".join(parts)
