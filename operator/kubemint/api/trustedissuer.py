"""TrustedIssuer: an external JWT issuer that a cluster admin vouches for.

An AccessRule's `when` over `claims` is only worth what the claims' source is worth. A tenant
can declare any issuer URL in its own ServiceAccount (`spec.federation.issuers`) with keys it
controls, and sign any claim; so claims verified that way are the tenant's word, not the
issuer's. A TrustedIssuer is how the cluster says "JWTs with this `iss`, verified with these
keys, really come from that issuer": it is honoured only in the token server's namespace,
which only cluster admins can write (like SigningKey; anywhere else it is reported
`WrongNamespace` and trusted by nothing). Tenants reference it by name from
`spec.federation.trustedIssuers`, and claims verified through it are `claims` in AccessRule
conditions (source `cluster`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KIND = "TrustedIssuer"
PLURAL = "trustedissuers"


@dataclass(frozen=True)
class TrustedIssuerSpec:
    namespace: str
    name: str
    issuer: str  # matched exactly against the JWT's `iss`
    jwks_uri: str | None  # fetched by the token server (https)
    jwks: Mapping[str, Any] | None  # or inline public keys

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> TrustedIssuerSpec:
        meta, spec = body["metadata"], body.get("spec") or {}
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            issuer=spec["issuer"],
            jwks_uri=spec.get("jwksUri"),
            jwks=spec.get("jwks"),
        )


@dataclass(frozen=True)
class TrustedIssuerRef:
    """A ServiceAccount's `spec.federation.trustedIssuers[]` item: which TrustedIssuer (by
    name, in the token server's namespace) and what its JWTs must carry for this account."""

    name: str
    subject: str | None
    audience: str | None
    when: str | None

    @classmethod
    def from_spec(cls, item: Mapping[str, Any]) -> TrustedIssuerRef:
        return cls(
            name=item["name"],
            subject=item.get("subject"),
            audience=item.get("audience"),
            when=item.get("when"),
        )
