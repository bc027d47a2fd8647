"""Who vouches for the claims a caller presented, and what an AccessRule's `when` sees of them.

The audience owner writes `claims.repository == "org/repo"` meaning "GitHub said so". Whether
that is true depends on who verified the JWT, not on its `iss` (any tenant can declare any
issuer URL, with keys it holds, in its own ServiceAccount). So every verified JWT carries the
source that vouched for it, and an AccessRule's condition gets the claims under a name that
says so:

| source (`request.issuerSource`) | who signed, whose keys | `claims` | `tenantClaims` |
|---|---|---|---|
| `cluster` | an issuer a cluster admin trusts (TrustedIssuer in the server namespace) | ✓ | |
| `kubernetes` | the cluster's own projected ServiceAccount token | ✓ | |
| `tenant` | an issuer the subject's namespace declared (`spec.federation.issuers`) | | ✓ |
| `client` | the client itself (`private_key_jwt` / `client_secret_jwt` assertion) | | ✓ |
| `none` | no JWT (client secret, app password) | | |

A tenant therefore cannot satisfy an expression over `claims` with anything it signs; an
owner who is content with the tenant's word writes `tenantClaims` and says so. An unknown
source counts as trusted by nobody (neither map), so a caller built without one fails closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CLUSTER = "cluster"
KUBERNETES = "kubernetes"
TENANT = "tenant"
CLIENT = "client"
NONE = "none"

TRUSTED = frozenset({CLUSTER, KUBERNETES})  # verified from a source the cluster trusts
SELF_ASSERTED = frozenset({TENANT, CLIENT})  # what a tenant says about itself


@dataclass(frozen=True)
class WhenInputs:
    """The three variables an AccessRule's `when` is evaluated with."""

    request: dict[str, Any]
    claims: dict[str, Any]
    tenant_claims: dict[str, Any]


def when_inputs(source: str, claims: Mapping[str, Any], request: Mapping[str, Any]) -> WhenInputs:
    """`request` (plus `issuerSource`), and the presented claims under the name their
    source earns them."""
    return WhenInputs(
        request={**request, "issuerSource": source},
        claims=dict(claims) if source in TRUSTED else {},
        tenant_claims=dict(claims) if source in SELF_ASSERTED else {},
    )
