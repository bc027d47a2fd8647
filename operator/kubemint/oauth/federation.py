"""Which kubemint ServiceAccount a foreign JWT stands for (zero-secret machine identity).

Three kinds of foreign JWTs are accepted:
- a Kubernetes projected ServiceAccount token whose audience is the kubemint issuer, from a
  ServiceAccount listed in an account's `spec.federation.kubernetes` (same namespace) that
  still exists: the token's `kubernetes.io.serviceaccount.uid` must be the uid of the live
  ServiceAccount of that name (a deleted, or deleted and re-created, one is refused, as a
  TokenReview would refuse it);
- a JWT from a TrustedIssuer (an issuer a cluster admin defined in the token server's
  namespace) that an account names in `spec.federation.trustedIssuers`;
- a JWT from an external issuer the account's namespace declared itself in
  `spec.federation.issuers`, checked against the keys it gave.
Each is checked against its keys, the required `sub`/`aud`, and the optional CEL `when` over
its claims and the token request (authentik's JWT authentication; `exp` must be in the
future). The account must list the client the request came through. The JWT's `iss` only
routes the lookup; everything is verified before it is trusted. A TrustedIssuer and a
tenant-declared issuer may share an `iss`: each candidate's keys are tried (trusted ones
first), and the one that verifies decides the claims' source (`cluster` or `tenant`, see
`kubemint.oauth.claim_sources`), which is what AccessRules' conditions rely on.

An issuer's `when` sees `claims` (the JWT's verified claims) and `request`: the same fields an
AccessRule's `when` gets (grant_type, client_id, subject, scopes, audience, source,
issuerSource), built by `request_context` from the token request, with `subject` the
candidate account's. A `when` that does not compile accepts nothing (the operator reports it
as InvalidExpression).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from kubemint.api.meta import ObjectRef
from kubemint.crypto.jwt import (
    ASYMMETRIC_ALGORITHMS,
    InvalidJWT,
    VerificationKeys,
    decode_unverified,
    verify_jwt,
)
from kubemint.oauth import claim_sources
from kubemint.oauth.errors import OAuth2Error, TemporarilyUnavailable
from kubemint.oauth.provenance import kubernetes_uid
from kubemint.policy.expressions import (
    ISSUER_VARIABLES,
    Condition,
    EvaluationUnavailable,
    ExpressionError,
    compile_condition,
)
from kubemint.store.snapshot import AccountView, ClientView, Snapshot

KUBERNETES = "kubernetes"  # the cluster's key source in KeyLookup (kubemint.store.issuers)
SA_PREFIX = "system:serviceaccount:"
MAX_LIFETIME = 48 * 3600.0  # projected tokens live up to 48 h (kubelet's expirationSeconds max)


class KeyLookup(Protocol):
    def get(self, name: str) -> tuple[str | None, Mapping[str, Any] | None]: ...
    def want_refresh(self, name: str) -> None: ...


@dataclass(frozen=True)
class FederationContext:
    keys: KeyLookup
    issuer: str  # kubemint's own issuer: the audience federated tokens must carry by default
    now: float


def request_context(form: Mapping[str, str], source: str, client: ClientView) -> dict[str, Any]:
    """What an issuer's `when` sees as `request`, from the token request's form parameters
    and source address: the fields an AccessRule's `when` sees, but known before the grant is
    decided. `audience` is the one audience the request names (`audience` or `resource`), or
    the client's only audience when it names none; None when that is ambiguous (the request
    then fails with invalid_target anyway). `subject` is added per candidate account."""
    named = {v for v in (form.get("audience"), form.get("resource")) if v}
    if len(named) == 1:
        audience: str | None = named.pop()
    elif not named and len(client.audiences) == 1:
        audience = client.audiences[0]
    else:
        audience = None
    return {
        "grant_type": form.get("grant_type"),
        "client_id": client.client_id,
        "audience": audience,
        "scopes": sorted(set((form.get("scope") or "").split())),
        "source": source,
    }


class Federated(NamedTuple):
    """A verified foreign JWT: the account it stands for, its claims, and who vouches for
    them (`claim_sources.KUBERNETES`, `CLUSTER` or `TENANT`)."""

    account: AccountView
    claims: dict[str, Any]
    source: str
    # The Kubernetes ServiceAccount a projected token of this cluster names: its tokens then
    # stop when that ServiceAccount goes (kubemint.oauth.provenance).
    kubernetes_uid: str | None = None


@dataclass(frozen=True)
class _Candidate:
    """One way an account accepts JWTs with a given `iss`."""

    source: str  # claim_sources.CLUSTER or TENANT
    keys: VerificationKeys | None  # inline keys (TrustedIssuer spec.jwks, copied Secret)
    jwks_uri: str | None
    subject: str | None
    audience: str | None
    when: str | None

    @property
    def key_source(self) -> str:
        return f"jwks:{self.jwks_uri}"


def federated_account(
    token: str,
    client: ClientView,
    snapshot: Snapshot,
    ctx: FederationContext,
    error: type[OAuth2Error],
    request: Mapping[str, Any] | None = None,
) -> Federated:
    """The account `token` authenticates through `client`, its verified claims and their
    source.

    `request` is what issuers' `when` conditions see as `request` (see `request_context`);
    without it they see only `request.subject` and `request.issuerSource`."""
    try:
        _, unverified = decode_unverified(token)
    except InvalidJWT:
        raise error("the assertion is not a JWT") from None
    iss = unverified.get("iss")
    cluster_issuer, cluster_keys = ctx.keys.get(KUBERNETES)
    if cluster_issuer is not None and iss == cluster_issuer:
        return _kubernetes(token, client, snapshot, ctx, error, cluster_issuer, cluster_keys)
    return _external(token, str(iss), client, snapshot, ctx, error, request or {})


def _kubernetes(
    token: str,
    client: ClientView,
    snapshot: Snapshot,
    ctx: FederationContext,
    error: type[OAuth2Error],
    issuer: str,
    keys: Mapping[str, Any] | None,
) -> Federated:
    claims = _verify(token, keys, issuer, ctx.issuer, ctx, KUBERNETES, error)
    subject = str(claims.get("sub", ""))
    namespace, _, name = subject.removeprefix(SA_PREFIX).partition(":")
    if not subject.startswith(SA_PREFIX) or namespace != client.ref.namespace:
        raise error("the ServiceAccount token is not federated with this client")
    for account in snapshot.accounts_by_kubernetes.get((namespace, name), ()):
        if client.ref.name in account.clients and not account.disabled:
            live = snapshot.kubernetes_accounts.get((namespace, name))
            uid = kubernetes_uid(claims)
            if live is None or uid != live:
                raise error(
                    "the ServiceAccount token's ServiceAccount no longer exists"
                    " (deleted or re-created)"
                )
            return Federated(account, claims, claim_sources.KUBERNETES, uid)
    raise error("the ServiceAccount token is not federated with this client")


def _candidates(account: AccountView, iss: str, snapshot: Snapshot) -> list[_Candidate]:
    """The account's ways to accept `iss`: the TrustedIssuers it names first, then its own."""
    found = []
    for ref in account.trusted_issuers:
        trusted = snapshot.trusted_issuers.get(ref.name)
        if trusted is not None and trusted.issuer == iss:
            found.append(
                _Candidate(
                    claim_sources.CLUSTER,
                    trusted.keys,
                    trusted.jwks_uri,
                    ref.subject,
                    ref.audience,
                    ref.when,
                )
            )
    for issuer in account.issuers:
        if issuer.issuer == iss:
            found.append(
                _Candidate(
                    claim_sources.TENANT,
                    account.issuer_keys.get(iss),
                    issuer.jwks_uri,
                    issuer.subject,
                    issuer.audience,
                    issuer.when,
                )
            )
    return found


def _external(
    token: str,
    iss: str,
    client: ClientView,
    snapshot: Snapshot,
    ctx: FederationContext,
    error: type[OAuth2Error],
    request: Mapping[str, Any],
) -> Federated:
    failure: OAuth2Error | None = None
    for account in snapshot.accounts_by_client.get((client.ref.namespace, client.ref.name), ()):
        if account.disabled:
            continue
        for candidate in _candidates(account, iss, snapshot):
            keys: VerificationKeys | None = candidate.keys
            if keys is None and candidate.jwks_uri:
                keys = ctx.keys.get(candidate.key_source)[1]
            audience = candidate.audience or ctx.issuer
            try:
                claims = _verify(token, keys, iss, audience, ctx, candidate.key_source, error)
            except OAuth2Error as exc:  # maybe another candidate's keys: try those
                failure = exc
                continue
            if candidate.subject is not None and claims.get("sub") != candidate.subject:
                continue
            seen = {**request, "subject": account.subject, "issuerSource": candidate.source}
            if candidate.when and not _allows(candidate.when, seen, claims, account.ref):
                continue
            return Federated(account, claims, candidate.source)
    raise failure or error("the assertion's issuer is not federated with this client")


def _verify(
    token: str,
    keys: VerificationKeys | None,
    issuer: str,
    audience: str,
    ctx: FederationContext,
    source: str,
    error: type[OAuth2Error],
) -> dict[str, Any]:
    if not keys:
        ctx.keys.want_refresh(source)
        raise error("the issuer's keys are not available yet; retry shortly")
    try:
        return verify_jwt(
            token,
            keys,
            algorithms=ASYMMETRIC_ALGORITHMS,
            issuer=issuer,
            audience=audience,
            now=ctx.now,
            require=("exp", "sub"),
            max_lifetime=MAX_LIFETIME,
        )
    except InvalidJWT as exc:
        if "kid" in str(exc) or "key" in str(exc):
            ctx.keys.want_refresh(source)  # maybe rotated: fetch again in the background
        raise error(f"assertion rejected: {exc}") from None


def _allows(
    source: str, request: dict[str, Any], claims: dict[str, Any], account: ObjectRef
) -> bool:
    """An issuer's `when`; one that cannot be evaluated in time (kubemint.policy.sandbox)
    fails the request as temporarily_unavailable rather than trying the next issuer."""
    condition = _condition(source)
    if condition is None:
        return False
    try:
        return condition.allows(request, claims, owner=account.namespace)
    except EvaluationUnavailable as exc:
        raise TemporarilyUnavailable(
            "an issuer condition could not be evaluated in time; retry later",
            retry_after=1,
            reason=f"{account} issuer condition (when) not evaluated: {exc.reason}",
        ) from None


@functools.lru_cache(maxsize=256)
def _condition(source: str) -> Condition | None:
    try:
        return compile_condition(source, "spec.federation.issuers[].when", ISSUER_VARIABLES)
    except ExpressionError:
        return None  # an invalid condition accepts nothing
