"""Who is calling the token endpoint: client authentication methods as a registry.

The caller is a client (authenticated with its own credential: RFC 6749 §2.3.1 basic/post,
RFC 7523 §2.2 client_secret_jwt/private_key_jwt) or a kubemint ServiceAccount acting
through one of its clients (authentik-style app password as `username`/`password`).
Every failure is the same `invalid_client` to the caller; the reason goes to the audit log.
Whether a client is disabled is told only to a caller that proved it is that client, so
client ids cannot be probed; a credential presented alongside an app password must be right.

A client's own assertion needs no `client_id` next to it (RFC 7521 §4.2: the client is the
assertion's subject; authlib sends none): the client is then its `sub`, and only when
`iss` == `sub` (RFC 7523 §3), so a federated assertion must still name its client. When
`client_id` is sent it must be that client.
"""

from __future__ import annotations

import base64
import datetime
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubemint.crypto import secrets
from kubemint.crypto.jwt import InvalidJWT
from kubemint.oauth.assertions import (
    DEFAULT_MAX_LIFETIME,
    ReplayCache,
    peek_unverified,
    verify_client_assertion,
)
from kubemint.oauth.claim_sources import CLIENT, NONE
from kubemint.oauth.errors import InvalidClient, InvalidRequest, UnauthorizedClient
from kubemint.oauth.federation import (
    FederationContext,
    KeyLookup,
    federated_account,
    request_context,
)
from kubemint.store.snapshot import AccountView, ClientView, Snapshot

JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FAILED = "client authentication failed"  # the one description every failure gets


_UNPARSED: Any = object()


@dataclass(frozen=True)
class TokenRequest:
    """A token request, already parsed from HTTP (single-valued form parameters)."""

    form: Mapping[str, str]
    authorization: str | None = None
    source: str = ""

    # basic_credentials(authorization): the tuple, None, or the InvalidClient it raised.
    _basic: Any = field(default=_UNPARSED, init=False, repr=False, compare=False)
    _asserted: Any = field(default=_UNPARSED, init=False, repr=False, compare=False)

    def asserted_client_id(self) -> str:
        """The client a `client_assertion` names itself as (`iss` == `sub`), unverified: who
        the request claims to be when it sends no `client_id` (RFC 7521 §4.2); else ""."""
        found = self._asserted
        if found is _UNPARSED:
            found = ""
            assertion = self.form.get("client_assertion")
            if assertion:
                try:
                    _, claims = peek_unverified(assertion)
                except InvalidJWT:
                    claims = {}
                sub = claims.get("sub")
                if isinstance(sub, str) and sub and claims.get("iss") == sub:
                    found = sub
            object.__setattr__(self, "_asserted", found)  # frozen: a cache, not state
        return found  # type: ignore[no-any-return]

    def basic(self) -> tuple[str, str] | None:
        """`basic_credentials(self.authorization)`, decoded once per request (the audit,
        the rate limits and authentication each ask)."""
        parsed = self._basic
        if parsed is _UNPARSED:
            try:
                parsed = basic_credentials(self.authorization)
            except InvalidClient as error:
                parsed = error
            object.__setattr__(self, "_basic", parsed)  # frozen: a cache, not state
        if isinstance(parsed, InvalidClient):
            raise InvalidClient(parsed.description, reason=parsed.reason)
        return parsed  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Caller:
    client: ClientView
    method: str
    account: AccountView | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)  # the presented JWT's claims
    claims_source: str = NONE  # who vouches for them (kubemint.oauth.claim_sources)
    # The Kubernetes ServiceAccount whose projected token authenticated `account`, if one did:
    # its tokens then stop when that ServiceAccount goes (kubemint.oauth.provenance).
    kubernetes_uid: str | None = None

    @property
    def subject(self) -> str:
        return self.account.subject if self.account else self.client.client_id

    @property
    def subject_ref(self) -> Any:
        return self.account.ref if self.account else self.client.ref


class _NoKeys:
    def get(self, name: str) -> tuple[str | None, Mapping[str, Any] | None]:
        return None, None

    def want_refresh(self, name: str) -> None:
        return None


NO_KEYS = _NoKeys()


@dataclass(frozen=True)
class AuthContext:
    snapshot: Snapshot
    issuer: str
    token_endpoint: str
    replay: ReplayCache
    now: datetime.datetime
    keys: KeyLookup = field(default_factory=lambda: NO_KEYS)
    assertion_lifetime: float = DEFAULT_MAX_LIFETIME  # longest client assertion accepted

    def federation(self) -> FederationContext:
        return FederationContext(self.keys, self.issuer, self.now.timestamp())


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and len(value) > 40 and not value.startswith("kmint_")


def federated(client: ClientView, token: str, request: TokenRequest, ctx: AuthContext) -> Caller:
    """A foreign JWT (Kubernetes projected token, federated issuer) authenticates an account."""
    found = federated_account(
        token,
        client,
        ctx.snapshot,
        ctx.federation(),
        InvalidClient,
        request=request_context(request.form, request.source, client),
    )
    return Caller(
        client,
        "federated_assertion",
        account=found.account,
        claims=found.claims,
        claims_source=found.source,
        kubernetes_uid=found.kubernetes_uid,
    )


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: `Basic base64(urlencode(id) ":" urlencode(secret))`."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("unsupported authorization scheme")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII input
        raise InvalidClient("malformed basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("malformed basic credentials")
    return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)


def claimed_client_id(request: TokenRequest) -> str:
    """The client id a request claims (form, Basic, or its own assertion's subject), for
    audit and rate limits only: the per-client failure limit must hold without client_id."""
    if request.form.get("client_id"):
        return request.form["client_id"]
    try:
        basic = request.basic()
    except InvalidClient:
        return ""
    return basic[0] if basic else request.asserted_client_id()


def has_credentials(request: TokenRequest) -> bool:
    form = request.form
    return bool(request.authorization or "client_secret" in form or "client_assertion" in form)


def authenticate(request: TokenRequest, ctx: AuthContext) -> Caller:
    """The authenticated caller, or InvalidClient/InvalidRequest."""
    form = request.form
    basic = request.basic()
    assertion = form.get("client_assertion")
    if basic and ("client_secret" in form or assertion):
        raise InvalidRequest("use exactly one client authentication method")
    client_id = basic[0] if basic else form.get("client_id") or request.asserted_client_id()
    if not client_id:
        raise InvalidClient("client authentication required")
    if basic and form.get("client_id") not in (None, client_id):
        raise InvalidRequest("client_id does not match the authenticated client")
    client = ctx.snapshot.clients.get(client_id)
    if client is None:
        raise InvalidClient(FAILED, reason="unknown client")
    if "username" in form or "password" in form:
        # `Basic base64("id:")` is how some libraries name a public client: no credential.
        presented = bool(basic and basic[1]) or "client_secret" in form or assertion
        if presented and _own_credential(client, request, basic, ctx).account:
            raise InvalidClient(FAILED, reason="a federated assertion with an app password")
        caller = _app_password(client, form, basic, ctx)
    else:
        caller = _own_credential(client, request, basic, ctx)
    if client.disabled:  # only now: an unauthenticated caller must not learn it
        raise UnauthorizedClient("the client is disabled")
    return caller


def _own_credential(
    client: ClientView, request: TokenRequest, basic: tuple[str, str] | None, ctx: AuthContext
) -> Caller:
    for method in METHODS.values():
        caller = method(client, request, basic, ctx)
        if caller is not None:
            if caller.account is None and client.auth_method != caller.method:
                raise InvalidClient(
                    FAILED,
                    reason=f"{caller.method} used; the client's authMethod is {client.auth_method}",
                )
            return caller
    raise InvalidClient(
        FAILED, reason=f"no credential; the client's authMethod is {client.auth_method}"
    )


def _secret_basic(
    client: ClientView, request: TokenRequest, basic: tuple[str, str] | None, ctx: AuthContext
) -> Caller | None:
    if basic is None:
        return None
    if not secrets.verify(basic[1], client.secret_digests(ctx.now)):
        if looks_like_jwt(basic[1]):  # authentik: a JWT where the secret goes
            return federated(client, basic[1], request, ctx)
        raise InvalidClient(FAILED, reason="wrong client secret")
    return Caller(client, "client_secret_basic")


def _secret_post(
    client: ClientView, request: TokenRequest, basic: tuple[str, str] | None, ctx: AuthContext
) -> Caller | None:
    secret = request.form.get("client_secret")
    if secret is None:
        return None
    if not secrets.verify(secret, client.secret_digests(ctx.now)):
        if looks_like_jwt(secret):  # authentik: a JWT where the secret goes
            return federated(client, secret, request, ctx)
        raise InvalidClient(FAILED, reason="wrong client secret")
    return Caller(client, "client_secret_post")


def _assertion(
    client: ClientView, request: TokenRequest, basic: tuple[str, str] | None, ctx: AuthContext
) -> Caller | None:
    assertion = request.form.get("client_assertion")
    if assertion is None:
        return None
    if request.form.get("client_assertion_type") != JWT_BEARER_ASSERTION:
        raise InvalidRequest("client_assertion_type must be " + JWT_BEARER_ASSERTION)
    try:
        _, unverified = peek_unverified(assertion)
    except InvalidJWT:
        raise InvalidClient("client assertion rejected: malformed") from None
    if unverified.get("iss") != client.client_id:
        # Not the client's own assertion (RFC 7523 §3: iss = sub = client_id): federation.
        return federated(client, assertion, request, ctx)
    if client.auth_method == "client_secret_jwt":
        claims = verify_client_assertion(
            assertion,
            client_id=client.client_id,
            tenant=client.ref.namespace,
            hmac_secrets=client.hmac_keys(ctx.now),
            token_endpoint=ctx.token_endpoint,
            issuer=ctx.issuer,
            replay=ctx.replay,
            now=ctx.now.timestamp(),
            max_lifetime=ctx.assertion_lifetime,
        )
        return Caller(client, "client_secret_jwt", claims=claims, claims_source=CLIENT)
    if client.auth_method == "private_key_jwt" and client.jwks:
        claims = verify_client_assertion(
            assertion,
            client_id=client.client_id,
            tenant=client.ref.namespace,
            keys=client.jwks,
            token_endpoint=ctx.token_endpoint,
            issuer=ctx.issuer,
            replay=ctx.replay,
            now=ctx.now.timestamp(),
            max_lifetime=ctx.assertion_lifetime,
        )
        return Caller(client, "private_key_jwt", claims=claims, claims_source=CLIENT)
    raise InvalidClient(
        FAILED, reason=f"client assertion; the client's authMethod is {client.auth_method}"
    )


def _app_password(
    client: ClientView, form: Mapping[str, str], basic: tuple[str, str] | None, ctx: AuthContext
) -> Caller:
    """authentik: `username` + app `password` authenticate a ServiceAccount using `client`."""
    username, password = form.get("username"), form.get("password")
    if not username or not password:
        raise InvalidRequest("username and password go together")
    account = ctx.snapshot.accounts.get((client.ref.namespace, username))
    if (
        account is None
        or account.disabled
        or client.ref.name not in account.clients
        or not secrets.verify(password, account.password_digests(ctx.now))
    ):
        raise InvalidClient(FAILED, reason="wrong username or app password")
    return Caller(client, "app_password", account=account)


Method = Callable[
    [ClientView, TokenRequest, "tuple[str, str] | None", AuthContext], "Caller | None"
]
METHODS: dict[str, Method] = {
    "client_secret_basic": _secret_basic,
    "client_secret_post": _secret_post,
    "client_assertion": _assertion,
}
