"""RFC 9068 JWT access tokens: the claim set and the token response."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from kubemint.oauth.client_auth import Caller
from kubemint.oauth.policy import Grant
from kubemint.oauth.provenance import CLAIM as PROVENANCE
from kubemint.oauth.provenance import provenance_claim

REGISTERED = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "client_id",
        "scope",
        "azp",
        "cnf",
        "act",
        PROVENANCE,
    }
)


def access_token_claims(
    caller: Caller, grant: Grant, issuer: str, now: int, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """iss, sub, aud, exp, iat, jti, client_id, scope (RFC 9068 §2.2) plus account claims,
    and the objects it is issued for (`kubemint.io`, see kubemint.oauth.provenance)."""
    claims: dict[str, Any] = {}
    if caller.account is not None:
        # Registered claims cannot be overridden (the CRD refuses them; this is belt and braces).
        claims.update({k: v for k, v in caller.account.claims.items() if k not in REGISTERED})
    claims.update(extra or {})
    claims.update(
        {
            "iss": issuer,
            "sub": caller.subject,
            "aud": grant.audience,
            "iat": now,
            "nbf": now,
            "exp": now + caller.client.token_lifetime,
            "jti": secrets.token_urlsafe(16),
            "client_id": caller.client.client_id,
        }
    )
    provenance = provenance_claim(caller.client, caller.account, caller.kubernetes_uid)
    if provenance:
        claims[PROVENANCE] = provenance
    else:
        claims.pop(PROVENANCE, None)  # never one that `extra` brought
    if grant.scopes:
        claims["scope"] = " ".join(grant.scopes)
    return claims


def token_response(token: str, caller: Caller, grant: Grant) -> dict[str, Any]:
    response: dict[str, Any] = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": caller.client.token_lifetime,
    }
    if grant.scopes:
        response["scope"] = " ".join(grant.scopes)
    return response
