"""RFC 9068 JWT access tokens: the claim set and the token response.

Every token carries `scope` (RFC 9068 §2.2.3, RFC 8693 §4.2), an empty string for an
audience-only token: a resource server that finds no `scope` may fall back to another claim
(Spring Security reads `scp` next), so its absence must never be what a token says. An
account's own claims come only as far as kubemint.api.identity and the grant allow.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from kubemint.api.identity import account_claims
from kubemint.oauth.client_auth import Caller
from kubemint.oauth.policy import Grant
from kubemint.oauth.provenance import CLAIM as PROVENANCE
from kubemint.oauth.provenance import provenance_claim


def access_token_claims(
    caller: Caller, grant: Grant, issuer: str, now: int, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """iss, sub, aud, exp, iat, jti, client_id, scope (RFC 9068 §2.2) plus account claims,
    and the objects it is issued for (`kubemint.io`, see kubemint.oauth.provenance)."""
    claims: dict[str, Any] = {}
    if caller.account is not None:
        # Never a forbidden name, whatever the CRD admitted; only those the grant allows.
        claims.update(account_claims(caller.account.claims, grant.account_claims))
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
            "scope": " ".join(grant.scopes),
        }
    )
    provenance = provenance_claim(caller.client, caller.account, caller.kubernetes_uid)
    if provenance:
        claims[PROVENANCE] = provenance
    else:
        claims.pop(PROVENANCE, None)  # never one that `extra` brought
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
