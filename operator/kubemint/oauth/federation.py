"""Which kubemint ServiceAccount a foreign JWT stands for (zero-secret machine identity).

Two kinds of foreign JWTs are accepted:
- a Kubernetes projected ServiceAccount token whose audience is the kubemint issuer, from a
  ServiceAccount listed in an account's `spec.federation.kubernetes` (same namespace);
- a JWT from an external issuer in an account's `spec.federation.issuers`, checked against
  its keys, the required `sub`/`aud`, and the optional CEL `when` over its claims
  (authentik's JWT authentication; `exp` must be in the future).
The account must list the client the request came through. The JWT's `iss` only routes the
lookup; everything is verified before it is trusted.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubemint.crypto.jwt import ASYMMETRIC_ALGORITHMS, InvalidJWT, decode_unverified, verify_jwt
from kubemint.oauth.errors import OAuth2Error
from kubemint.policy.expressions import Condition, ExpressionError, compile_condition
from kubemint.store.snapshot import AccountView, ClientView, Snapshot

KUBERNETES = "kubernetes"
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


def federated_account(
    token: str,
    client: ClientView,
    snapshot: Snapshot,
    ctx: FederationContext,
    error: type[OAuth2Error],
) -> tuple[AccountView, dict[str, Any]]:
    """The account `token` authenticates through `client`, and its verified claims."""
    try:
        _, unverified = decode_unverified(token)
    except InvalidJWT:
        raise error("the assertion is not a JWT") from None
    iss = unverified.get("iss")
    cluster_issuer, cluster_keys = ctx.keys.get(KUBERNETES)
    if cluster_issuer is not None and iss == cluster_issuer:
        return _kubernetes(token, client, snapshot, ctx, error, cluster_issuer, cluster_keys)
    return _external(token, str(iss), client, snapshot, ctx, error)


def _kubernetes(
    token: str,
    client: ClientView,
    snapshot: Snapshot,
    ctx: FederationContext,
    error: type[OAuth2Error],
    issuer: str,
    keys: Mapping[str, Any] | None,
) -> tuple[AccountView, dict[str, Any]]:
    claims = _verify(token, keys, issuer, ctx.issuer, ctx, KUBERNETES, error)
    subject = str(claims.get("sub", ""))
    namespace, _, name = subject.removeprefix(SA_PREFIX).partition(":")
    if not subject.startswith(SA_PREFIX) or namespace != client.ref.namespace:
        raise error("the ServiceAccount token is not federated with this client")
    for account in snapshot.accounts_by_kubernetes.get((namespace, name), ()):
        if client.ref.name in account.clients and not account.disabled:
            return account, claims
    raise error("the ServiceAccount token is not federated with this client")


def _external(
    token: str,
    iss: str,
    client: ClientView,
    snapshot: Snapshot,
    ctx: FederationContext,
    error: type[OAuth2Error],
) -> tuple[AccountView, dict[str, Any]]:
    for account in snapshot.accounts_by_client.get((client.ref.namespace, client.ref.name), ()):
        if account.disabled:
            continue
        for issuer in account.issuers:
            if issuer.issuer != iss:
                continue
            keys: Mapping[str, Any] | None = account.issuer_keys.get(iss)
            source = f"jwks:{issuer.jwks_uri}"
            if keys is None and issuer.jwks_uri:
                keys = ctx.keys.get(source)[1]
            claims = _verify(token, keys, iss, issuer.audience or ctx.issuer, ctx, source, error)
            if issuer.subject is not None and claims.get("sub") != issuer.subject:
                continue
            if issuer.when and not _allows(issuer.when, claims):
                continue
            return account, claims
    raise error("the assertion's issuer is not federated with this client")


def _verify(
    token: str,
    keys: Mapping[str, Any] | None,
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


def _allows(source: str, claims: dict[str, Any]) -> bool:
    condition = _condition(source)
    return condition is not None and condition.allows({}, claims)


@functools.lru_cache(maxsize=256)
def _condition(source: str) -> Condition | None:
    try:
        return compile_condition(source, "spec.federation.issuers[].when")
    except ExpressionError:
        return None  # an invalid condition accepts nothing
