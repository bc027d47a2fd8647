"""POST /oauth2/token as a function: authenticate, check the grant, decide scopes, sign.

Grant types are dispatched by name; `password` is client_credentials with a ServiceAccount's
app password (authentik). Client authentication runs under the failed-attempt limits of
`oauth.ratelimit`. The result carries an audit record (who, what, outcome; never a secret or
token) for the web layer to log: its values are the server's own vocabulary or names of
objects that exist, never what an unauthenticated caller typed (`audited_grant_type`,
`audited_client_id`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubemint.oauth.assertions import DEFAULT_MAX_LIFETIME, ReplayCache
from kubemint.oauth.client_auth import (
    NO_KEYS,
    AuthContext,
    Caller,
    TokenRequest,
    authenticate,
    claimed_client_id,
    has_credentials,
)
from kubemint.oauth.errors import (
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    OAuth2Error,
    TemporarilyUnavailable,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from kubemint.oauth.federation import (
    KeyLookup,
    federated_account,
    request_context,
)
from kubemint.oauth.policy import (
    Grant,
    RuleOutcome,
    choose_audience,
    decide,
    requested_scopes,
)
from kubemint.oauth.ratelimit import AuthLimits
from kubemint.oauth.tokens import access_token_claims, token_response
from kubemint.store.snapshot import KeyRing, Snapshot

CLIENT_CREDENTIALS = "client_credentials"
PASSWORD = "password"  # noqa: S105 — a grant type name
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
SUPPORTED_GRANTS = (CLIENT_CREDENTIALS, PASSWORD, JWT_BEARER, TOKEN_EXCHANGE)
UNSUPPORTED = "unsupported"  # the audit's grant type or client id for values it does not know
UNKNOWN = "unknown"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
# RFC 8693 §3: subject tokens kubemint can verify (JWTs from federated issuers).
SUBJECT_TOKEN_TYPES = frozenset(
    {
        "urn:ietf:params:oauth:token-type:jwt",
        "urn:ietf:params:oauth:token-type:id_token",
        "urn:ietf:params:oauth:token-type:access_token",
    }
)


@dataclass
class Audit:
    """One line of the audit log: never a secret or a token, nor anything else an outsider
    chose (a caller could paste a token into any field)."""

    grant_type: str = ""
    client_id: str = ""
    subject: str = ""
    audience: str = ""
    scopes: str = ""
    method: str = ""
    outcome: str = "refused"
    error: str = ""
    reason: str = ""  # why, for whoever runs the server (never shown to the caller)
    source: str = ""
    kid: str = ""  # the key that signed an issued token (compromise response, metrics)

    def fields(self) -> dict[str, Any]:
        # Values may come from the request (a claimed client_id): cap their length.
        return {k: v[:200] for k, v in self.__dict__.items() if v}


@dataclass
class TokenService:
    issuer: str
    token_endpoint: str
    snapshot: Callable[[], Snapshot]
    replay: ReplayCache = field(default_factory=ReplayCache)
    keys: KeyLookup = field(default_factory=lambda: NO_KEYS)
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
    limits: AuthLimits = field(default_factory=AuthLimits)
    assertion_lifetime: float = DEFAULT_MAX_LIFETIME

    def context(self, snapshot: Snapshot, now: datetime.datetime) -> AuthContext:
        return AuthContext(
            snapshot,
            self.issuer,
            self.token_endpoint,
            self.replay,
            now,
            self.keys,
            self.assertion_lifetime,
        )

    def authenticate(self, request: TokenRequest) -> Caller:
        """Client authentication alone (introspection and revocation callers)."""
        ctx = self.context(self.snapshot(), self.clock())
        return self.limits.guard(request, lambda: authenticate(request, ctx))

    def issue(self, request: TokenRequest, audit: Audit) -> dict[str, Any]:
        grant_type = request.form.get("grant_type", "")
        audit.grant_type, audit.source = audited_grant_type(grant_type), request.source
        if not grant_type:
            raise InvalidRequest("grant_type is required")
        if grant_type not in SUPPORTED_GRANTS:
            raise UnsupportedGrantType("this grant type is not supported")
        snapshot, now = self.snapshot(), self.clock()
        audit.client_id = audited_client_id(claimed_client_id(request), snapshot)
        ctx = self.context(snapshot, now)
        if grant_type in (JWT_BEARER, TOKEN_EXCHANGE):
            caller = self.limits.guard(
                request, lambda: self._assertion_grant(grant_type, request, ctx)
            )
        else:
            caller = self.limits.guard(request, lambda: authenticate(request, ctx))
        audit.client_id, audit.subject, audit.method = (
            caller.client.client_id,
            caller.subject,
            caller.method,
        )
        response = self._grant(caller, request, snapshot, now, audit)
        if grant_type == TOKEN_EXCHANGE:
            response["issued_token_type"] = ACCESS_TOKEN_TYPE
        return response

    def _assertion_grant(self, grant_type: str, request: TokenRequest, ctx: AuthContext) -> Caller:
        """RFC 7523 §2.1 `assertion` / RFC 8693 `subject_token`: a federated JWT names the
        subject. The client authenticates if it has credentials; a `none` client is named by
        `client_id` alone (its callers prove themselves with the JWT)."""
        form = request.form
        if grant_type == JWT_BEARER:
            token = form.get("assertion")
            if not token:
                raise InvalidRequest("assertion is required")
        else:
            token = form.get("subject_token")
            if not token:
                raise InvalidRequest("subject_token is required")
            if form.get("subject_token_type") not in SUBJECT_TOKEN_TYPES:
                raise InvalidRequest("subject_token_type must name a JWT token type")
            if form.get("actor_token"):
                raise InvalidRequest("actor_token (delegation) is not supported")
            wanted = form.get("requested_token_type")
            if wanted not in (None, ACCESS_TOKEN_TYPE, "urn:ietf:params:oauth:token-type:jwt"):
                raise InvalidRequest("only access tokens can be requested")
        if has_credentials(request):
            client = authenticate(request, ctx).client
        else:
            named = ctx.snapshot.clients.get(form.get("client_id", ""))
            if named is None or named.auth_method != "none":
                raise InvalidClient("client authentication required")
            client = named
        found = federated_account(
            token,
            client,
            ctx.snapshot,
            ctx.federation(),
            InvalidGrant,
            request=request_context(form, request.source, client),
        )
        if client.disabled:  # after the assertion proved the caller: ids cannot be probed
            raise UnauthorizedClient("the client is disabled")
        return Caller(
            client,
            grant_type.rsplit(":", 1)[-1],
            account=found.account,
            claims=found.claims,
            claims_source=found.source,
            kubernetes_uid=found.kubernetes_uid,
        )

    def _grant(
        self,
        caller: Caller,
        request: TokenRequest,
        snapshot: Snapshot,
        now: datetime.datetime,
        audit: Audit,
    ) -> dict[str, Any]:
        grant = grant_for(caller, request.form, request.source, snapshot, audit=audit)
        audit.scopes = " ".join(grant.scopes)
        ring = snapshot.keys.get(caller.client.signing_key)
        if ring is None or ring.signer is None:
            raise TemporarilyUnavailable("the client's signing key is not available yet")
        claims = access_token_claims(caller, grant, self.issuer, int(now.timestamp()))
        token = self._format(caller, ring, snapshot, claims)
        audit.outcome, audit.kid = "issued", ring.active_kid
        return token_response(token, caller, grant)

    @staticmethod
    def _format(caller: Caller, ring: KeyRing, snapshot: Snapshot, claims: dict[str, Any]) -> str:
        """A signed JWT; sealed as an opaque token, or wrapped in a JWE for resource servers
        holding the client's encryption key (RSA-OAEP-256 + A256CBC-HS512)."""
        client = caller.client
        if client.token_format == "opaque":  # noqa: S105 — a format name
            return ring.opaque[ring.active_kid].seal(claims)
        assert ring.signer is not None
        token = ring.signer.sign(claims)
        if client.encryption_key:
            encryption = snapshot.keys.get(client.encryption_key)
            if encryption is None or encryption.encrypter is None:
                raise TemporarilyUnavailable("the client's encryption key is not available yet")
            token = encryption.encrypter.encrypt(token)
        return token


def grant_for(
    caller: Caller,
    form: Mapping[str, str],
    source: str,
    snapshot: Snapshot,
    *,
    audit: Audit | None = None,
    trace: list[RuleOutcome] | None = None,
) -> Grant:
    """What an authenticated caller gets: the grant type it may use, the audience, the scopes
    the rules grant (or the OAuth error saying why not). Signing comes after. The token
    endpoint and `kubemint can-i` (a dry run: the caller built without its credential)
    both decide with this."""
    grant_type = form.get("grant_type", "")
    if grant_type not in caller.client.grant_types:
        raise UnauthorizedClient("the client may not use this grant type")
    if grant_type == PASSWORD and caller.account is None:
        raise InvalidRequest("the password grant needs username and password")
    audiences = [v for v in (form.get("audience"), form.get("resource")) if v]
    audience = choose_audience(caller, audiences)
    if audit is not None:
        audit.audience = audience
    requested = requested_scopes(form.get("scope"))

    def context() -> dict[str, Any]:
        """What a rule's `when` sees as `request`."""
        return {
            "grant_type": form.get("grant_type"),
            "client_id": caller.client.client_id,
            "subject": caller.subject,
            "audience": audience,
            "scopes": sorted(requested or []),
            "source": source,
        }

    return decide(caller, snapshot, audience, requested, context, trace)


def audit_error(audit: Audit, error: OAuth2Error) -> None:
    audit.outcome, audit.error, audit.reason = "refused", error.error, error.reason


def audited_grant_type(grant_type: str) -> str:
    """A supported grant type as it is; anything else as `unsupported` (a pasted token must
    not reach the log)."""
    if not grant_type:
        return ""
    return grant_type if grant_type in SUPPORTED_GRANTS else UNSUPPORTED


def audited_client_id(claimed: str, snapshot: Snapshot) -> str:
    """A claimed client id if a client has it, else `unknown`: before authentication the id
    is whatever the caller typed."""
    if not claimed:
        return ""
    return claimed if claimed in snapshot.clients else UNKNOWN
