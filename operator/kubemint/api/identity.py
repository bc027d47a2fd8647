"""Whose names a tenant may use: client ids, token subjects and account claims.

A token's `sub` is either a client's own `client_id` or a kubemint ServiceAccount's
`kubemint:serviceaccount:<namespace>:<name>`, and both are built from the owner's namespace,
so no tenant can name another's (DESIGN.md, Tenancy: Identity):

- A client id is `<namespace>.<name>` or an explicit `spec.clientId` that starts with
  `<namespace>.`. Namespace names are DNS labels (no `.` or `:`), so the text before a client
  id's first `.` is the namespace that owns it: one namespace cannot take, or pre-claim,
  another's ids, whatever names either picks.
- An account subject starts with `kubemint:`, and a client id never does: its first `.` comes
  before any `:`. Client and account subjects are disjoint by construction.

An account's `spec.claims` are what a tenant asserts about itself. Claims that carry
authorization or identity to a resource server (scopes, roles, groups, permissions, the
authentication facts, the principal's name) or that the token server sets itself are never
accepted there, whatever the spelling; nor are names in someone else's namespace (URIs,
`vendor:claim`, dotted names). The CRD refuses the listed names at admission; these functions
are the rule the operator and token server apply, since a cluster may run older CRDs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

ACCOUNT_SUBJECT_PREFIX = "kubemint:serviceaccount:"
RESERVED_PREFIX = "kubemint:"


def account_subject(namespace: str, name: str) -> str:
    """The `sub` claim of tokens issued to a kubemint ServiceAccount."""
    return f"{ACCOUNT_SUBJECT_PREFIX}{namespace}:{name}"


def derived_client_id(namespace: str, name: str) -> str:
    """The client id of an OAuth2Client without `spec.clientId`."""
    return f"{namespace}.{name}"


def client_id_in_namespace(namespace: str, client_id: str) -> bool:
    """Whether `client_id` lies in `namespace`'s own space: `<namespace>.<something>`."""
    prefix = f"{namespace}."
    return client_id.startswith(prefix) and len(client_id) > len(prefix)


def explicit_client_id_problem(namespace: str, client_id: str) -> str | None:
    """Why an explicit `spec.clientId` may not be used in `namespace` (None when it may).

    The message names only the client's own namespace, which its reader can see."""
    if client_id_in_namespace(namespace, client_id):
        return None
    reserved = (
        f"; the {RESERVED_PREFIX} prefix is reserved for the subjects of kubemint ServiceAccounts"
        if client_id.startswith(RESERVED_PREFIX)
        else ""
    )
    return (
        f"spec.clientId: {client_id!r} is outside this namespace's client ids: it must start "
        f"with '{namespace}.'{reserved}"
    )


# Claim names an account may not set, lower case (compared case-insensitively), by why.
SET_BY_TOKEN_SERVER = (
    # RFC 7519 §4.1, RFC 9068 §2.2, RFC 8693 §4 (act, may_act, scope, client_id), RFC 7800.
    "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "azp", "cnf", "act",
    "may_act",
)  # fmt: skip
AUTHENTICATION = (
    # RFC 9068 §2.2.1, OpenID Connect Core §2 and §3.1.3.6, RFC 9449 (DPoP), token kinds.
    "auth_time", "acr", "amr", "nonce", "at_hash", "c_hash", "s_hash", "sid", "ath",
    "typ", "token_use", "token_type", "gty", "session_state",
)  # fmt: skip
AUTHORIZATION = (
    # RFC 9068 §2.2.3.1 (roles, groups, entitlements), RFC 9396, and what common resource
    # servers read as authority: Spring Security (scp, authorities), Entra ID (scp, roles,
    # wids), Okta (scp, groups), Keycloak (realm_access, resource_access), Auth0 (permissions),
    # PostgREST/Supabase (role, app_metadata), Kubernetes OIDC (groups).
    "scp", "scopes", "roles", "role", "groups", "group", "entitlements", "permissions",
    "permission", "perms", "authorities", "authority", "authorization_details", "wids",
    "realm_access", "resource_access", "app_metadata",
)  # fmt: skip
IDENTITY = (
    # Names resource servers map to the principal or its tenant instead of `sub` (OpenID
    # Connect standard claims, Entra ID, Okta, Auth0 Organizations, Kubernetes OIDC).
    "email", "email_verified", "preferred_username", "username", "upn", "unique_name", "oid",
    "tid", "org_id", "uid", "cid", "appid", "azpacr", "appidacr", "idp", "phone_number",
    "phone_number_verified",
)  # fmt: skip
FORBIDDEN_CLAIMS = frozenset(SET_BY_TOKEN_SERVER + AUTHENTICATION + AUTHORIZATION + IDENTITY)

# A private claim name (RFC 7519 §4.3): not a URI, `vendor:claim` or dotted public name, which
# belong to whoever owns that namespace (e.g. `https://api.example.com/roles`,
# `cognito:groups`, `kubernetes.io`).
CLAIM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def forbidden_claim(name: str) -> bool:
    return name.lower() in FORBIDDEN_CLAIMS or CLAIM_NAME.fullmatch(name) is None


def forbidden_claims(names: Iterable[str]) -> list[str]:
    """The names among `names` an account may not set, sorted."""
    return sorted(n for n in names if forbidden_claim(n))


def claims_problem(claims: Mapping[str, Any]) -> str | None:
    """Why `spec.claims` may not be used (None when it may); names the field and the claims."""
    refused = forbidden_claims(claims)
    if not refused:
        return None
    return (
        "spec.claims: tokens cannot carry these claims from an account (they are set by the "
        "token server, carry authorization or identity, or are not plain names of up to 64 "
        f"letters, digits, _ and -): {', '.join(refused)}"
    )


def account_claims(claims: Mapping[str, Any], allowed: frozenset[str] | None) -> dict[str, Any]:
    """The claims of an account a token may carry: never a forbidden one, and only those in
    `allowed` (None: all the others)."""
    return {
        k: v
        for k, v in claims.items()
        if not forbidden_claim(k) and (allowed is None or k in allowed)
    }
