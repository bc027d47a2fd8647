"""POST /oauth2/token as a function: authenticate, check the grant, decide scopes, sign.

Grant types are dispatched by name; `password` is client_credentials with a ServiceAccount's
app password (authentik). The result carries an audit record (who, what, outcome; never a
secret or token) for the web layer to log.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubemint.oauth.assertions import ReplayCache
from kubemint.oauth.client_auth import AuthContext, Caller, TokenRequest, authenticate
from kubemint.oauth.errors import (
    InvalidRequest,
    OAuth2Error,
    TemporarilyUnavailable,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from kubemint.oauth.policy import choose_audience, decide, requested_scopes
from kubemint.oauth.tokens import access_token_claims, token_response
from kubemint.store.snapshot import Snapshot

CLIENT_CREDENTIALS = "client_credentials"
PASSWORD = "password"  # noqa: S105 — a grant type name
SUPPORTED_GRANTS = (CLIENT_CREDENTIALS, PASSWORD)


@dataclass
class Audit:
    """One line of the audit log: never a secret or a token."""

    grant_type: str = ""
    client_id: str = ""
    subject: str = ""
    audience: str = ""
    scopes: str = ""
    method: str = ""
    outcome: str = "refused"
    error: str = ""
    source: str = ""

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v}


@dataclass
class TokenService:
    issuer: str
    token_endpoint: str
    snapshot: Callable[[], Snapshot]
    replay: ReplayCache = field(default_factory=ReplayCache)
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)

    def issue(self, request: TokenRequest, audit: Audit) -> dict[str, Any]:
        grant_type = request.form.get("grant_type", "")
        audit.grant_type, audit.source = grant_type, request.source
        if not grant_type:
            raise InvalidRequest("grant_type is required")
        if grant_type not in SUPPORTED_GRANTS:
            raise UnsupportedGrantType("this grant type is not supported")
        snapshot, now = self.snapshot(), self.clock()
        audit.client_id = request.form.get("client_id", "")
        caller = authenticate(
            request, AuthContext(snapshot, self.issuer, self.token_endpoint, self.replay, now)
        )
        audit.client_id, audit.subject, audit.method = (
            caller.client.client_id,
            caller.subject,
            caller.method,
        )
        if grant_type not in caller.client.grant_types:
            raise UnauthorizedClient("the client may not use this grant type")
        if grant_type == PASSWORD and caller.account is None:
            raise InvalidRequest("the password grant needs username and password")
        return self._grant(caller, request, snapshot, now, audit)

    def _grant(
        self,
        caller: Caller,
        request: TokenRequest,
        snapshot: Snapshot,
        now: datetime.datetime,
        audit: Audit,
    ) -> dict[str, Any]:
        form = request.form
        audiences = [v for v in (form.get("audience"), form.get("resource")) if v]
        audience = choose_audience(caller, audiences)
        audit.audience = audience
        context = {
            "grant_type": form.get("grant_type"),
            "client_id": caller.client.client_id,
            "subject": caller.subject,
            "audience": audience,
            "scopes": sorted(requested_scopes(form.get("scope")) or []),
            "source": request.source,
        }
        grant = decide(caller, snapshot, audience, requested_scopes(form.get("scope")), context)
        audit.scopes = " ".join(grant.scopes)
        ring = snapshot.keys.get(caller.client.signing_key)
        if ring is None or ring.signer is None:
            raise TemporarilyUnavailable("the client's signing key is not available yet")
        claims = access_token_claims(caller, grant, self.issuer, int(now.timestamp()))
        token = ring.signer.sign(claims)
        audit.outcome = "issued"
        return token_response(token, caller, grant)


def audit_error(audit: Audit, error: OAuth2Error) -> None:
    audit.outcome, audit.error = "refused", error.error
