"""TrustedIssuer decisions: honoured only in the token server's namespace, keys must parse.

The namespace check is what makes a TrustedIssuer mean anything: tenants can create objects
of any kubemint kind in their own namespaces, so one elsewhere is refused (`WrongNamespace`)
and the token server never reads it. The message names only the server namespace, which
every tenant already knows from its client Secrets' `token-url`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubemint.api.meta import Outcome
from kubemint.api.trustedissuer import TrustedIssuerSpec
from kubemint.crypto.jwks import InvalidJWKS, parse_public_jwks
from kubemint.reconcile.checks import Check, evaluate


@dataclass(frozen=True)
class IssuerContext:
    server_namespace: str


def _in_server_namespace(spec: TrustedIssuerSpec, ctx: IssuerContext) -> Outcome | None:
    if spec.namespace == ctx.server_namespace:
        return None
    return Outcome(
        False,
        "WrongNamespace",
        "metadata.namespace: TrustedIssuers are honoured only in the token server's namespace "
        f"{ctx.server_namespace}; this one is trusted by nothing",
    )


def _keys_valid(spec: TrustedIssuerSpec, ctx: IssuerContext) -> Outcome | None:
    if spec.jwks is None:
        return None
    try:
        parse_public_jwks(spec.jwks, "spec.jwks")
    except InvalidJWKS as exc:
        return Outcome(False, "InvalidJWKS", str(exc))
    return None


CHECKS: tuple[Check[TrustedIssuerSpec, IssuerContext], ...] = (_in_server_namespace, _keys_valid)


def check_trusted_issuer(spec: TrustedIssuerSpec, ctx: IssuerContext) -> Outcome:
    failure = evaluate(CHECKS, spec, ctx)
    if not failure.ready:
        return failure
    keys = (
        f"{len((spec.jwks or {}).get('keys') or [])} key(s) from spec.jwks"
        if spec.jwks is not None
        else "keys fetched by the token server from spec.jwksUri"
    )
    return Outcome.ok(f"JWTs with iss {spec.issuer} are verified with {keys}")
