"""Which scopes a caller gets for an audience: requested ∩ client scopes ∩ AccessRule grants.

Default deny: without an AccessRule (in the namespace that owns the audience) naming the
subject, nothing is issued. Requested scopes beyond what is allowed are an `invalid_scope`
error, never silently dropped; no scope requested means everything allowed (authentik).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubemint.oauth.client_auth import Caller
from kubemint.oauth.errors import (
    AccessDenied,
    InvalidScope,
    InvalidTarget,
    TemporarilyUnavailable,
)
from kubemint.policy.expressions import EvaluationUnavailable
from kubemint.store.snapshot import Snapshot

MAX_SCOPES = 64


@dataclass(frozen=True)
class Grant:
    audience: str
    scopes: tuple[str, ...]  # sorted


def requested_scopes(raw: str | None) -> set[str] | None:
    """RFC 6749 §3.3 scope parameter; None when absent."""
    if raw is None:
        return None
    scopes = set(raw.split())
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
) -> Grant:
    """The scopes to issue, or the OAuth error explaining why not.

    `request_context` is called only when a matching rule has a `when` condition. A
    condition that cannot be evaluated within its budget (see kubemint.policy.sandbox) fails
    this request with temporarily_unavailable: neither granting nor silently denying.
    """
    subject = caller.subject_ref
    granted: set[str] = set()
    matched = False
    context: dict[str, Any] | None = None
    for rule in snapshot.rules.get(audience, ()):
        if subject not in rule.subjects:
            continue
        if rule.condition is not None:
            if context is None:
                context = dict(request_context())
            try:
                holds = rule.condition.allows(context, dict(caller.claims), rule.ref.namespace)
            except EvaluationUnavailable as exc:
                raise TemporarilyUnavailable(
                    "an AccessRule condition could not be evaluated in time; retry later",
                    retry_after=1,
                    reason=f"{rule.ref} spec.when not evaluated: {exc.reason}",
                ) from None
            if not holds:
                continue
        matched = True
        granted |= rule.scopes
    if not matched:
        raise AccessDenied(f"no AccessRule grants {caller.subject} access to this audience")
    allowed = granted & caller.client.scopes
    if scopes is None:
        return Grant(audience, tuple(sorted(allowed)))
    beyond = scopes - allowed
    if beyond:
        raise InvalidScope(f"scope not allowed: {' '.join(sorted(beyond))}")
    return Grant(audience, tuple(sorted(scopes)))
