"""kubemint ServiceAccount decisions: references, usable grants, federation, app passwords.

An account authenticates through one of its clients with an app password (the `password`
or `client_credentials` grant, authentik-style), a projected Kubernetes ServiceAccount token
or an external issuer's JWT — a TrustedIssuer's or one the account declares itself
(client_assertion, jwt-bearer, token exchange).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubemint.api.addresses import Network, literal_refusal
from kubemint.api.identity import claims_problem
from kubemint.api.meta import Outcome
from kubemint.api.records import AccountRecord, Owner
from kubemint.api.serviceaccount import AccountSpec, AppPasswordSpec
from kubemint.crypto.jwks import InvalidJWKS, parse_key_document
from kubemint.policy.expressions import ISSUER_VARIABLES, ExpressionError, compile_condition
from kubemint.reconcile.checks import Check, evaluate
from kubemint.reconcile.rotating_secret import SecretPlan, SecretPolicy

PASSWORD_GRANTS = frozenset({"password", "client_credentials"})
ASSERTION_GRANTS = frozenset(
    {
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    }
)


@dataclass(frozen=True)
class AccountContext:
    clients: Mapping[str, tuple[str, ...]]  # existing OAuth2Clients in the namespace → grants
    kubernetes_accounts: frozenset[str]  # existing Kubernetes ServiceAccounts in the namespace
    issuer_key_texts: Mapping[tuple[str, str], str | None]  # (secret, key) → content or None
    trusted_issuers: Mapping[str, str] = field(default_factory=dict)  # server namespace: name → iss
    # The namespace's jwksUris the token server fetches (api.serviceaccount.admitted_jwks_uris
    # over its accounts, this one included); None: no quota applies.
    admitted_jwks_uris: frozenset[str] | None = None
    jwks_uris_per_namespace: int = 0  # the quota, for the message
    cluster_networks: tuple[Network, ...] = ()  # as the token server refuses them
    allowed_networks: tuple[Network, ...] = ()


def _claims_allowed(spec: AccountSpec, ctx: AccountContext) -> Outcome | None:
    """No claim that a token server sets, that carries authorization or identity, or that is
    not a plain private name (kubemint.api.identity); the token server skips such accounts."""
    problem = claims_problem(spec.claims)
    return Outcome(False, "ForbiddenClaims", problem) if problem else None


def _clients_exist(spec: AccountSpec, ctx: AccountContext) -> Outcome | None:
    missing = [c for c in spec.clients if c not in ctx.clients]
    if not missing:
        return None
    return Outcome(
        False,
        "ClientNotFound",
        f"spec.clients: OAuth2Client {spec.namespace}/{missing[0]} does not exist",
    )


def _has_credentials(spec: AccountSpec, ctx: AccountContext) -> Outcome | None:
    if spec.app_passwords or spec.federated:
        return None
    return Outcome(
        False,
        "NoCredentials",
        "spec: set spec.appPasswords or spec.federation; the account has no way to authenticate",
    )


def _grants_usable(spec: AccountSpec, ctx: AccountContext) -> Outcome | None:
    grants = {g for c in spec.clients for g in ctx.clients.get(c, ())}
    if spec.app_passwords and not grants & PASSWORD_GRANTS:
        return Outcome(
            False,
            "GrantMismatch",
            "spec.appPasswords: no client in spec.clients allows the password or "
            "client_credentials grant",
        )
    if spec.federated and not grants & ASSERTION_GRANTS:
        return Outcome(
            False,
            "GrantMismatch",
            "spec.federation: no client in spec.clients allows client_credentials, jwt-bearer "
            "or token-exchange",
        )
    return None


def _kubernetes_accounts_exist(spec: AccountSpec, ctx: AccountContext) -> Outcome | None:
    for index, name in enumerate(spec.kubernetes):
        if name not in ctx.kubernetes_accounts:
            return Outcome(
                False,
                "KubernetesServiceAccountNotFound",
                f"spec.federation.kubernetes[{index}].serviceAccountName: ServiceAccount "
                f"{spec.namespace}/{name} does not exist",
            )
    return None


def _issuer_conditions_compile(spec: AccountSpec, ctx: AccountContext) -> Outcome | None:
    """Each issuer's `when` must compile: one that does not accepts no token (the token
    server skips it), which the status must say rather than leave to a silent refusal."""
    conditions = [
        *((f"spec.federation.issuers[{i}].when", item.when) for i, item in enumerate(spec.issuers)),
        *(
            (f"spec.federation.trustedIssuers[{i}].when", item.when)
            for i, item in enumerate(spec.trusted_issuers)
        ),
    ]
    for field_path, when in conditions:
        if not when:
            continue
        try:
            compile_condition(when, field_path, ISSUER_VARIABLES)
        except ExpressionError as exc:
            return Outcome(False, "InvalidExpression", str(exc))
    return None


def _trusted_issuers_exist(spec: AccountSpec, ctx: AccountContext) -> Outcome | None:
    """A name that is not a TrustedIssuer in the server namespace accepts nothing. Saying so
    reveals only whether the cluster trusts an issuer of that name, which tenants are meant
    to know (they reference them), not anything about another tenant's namespace."""
    for index, ref in enumerate(spec.trusted_issuers):
        if ref.name not in ctx.trusted_issuers:
            return Outcome(
                False,
                "TrustedIssuerNotFound",
                f"spec.federation.trustedIssuers[{index}].name: no TrustedIssuer {ref.name} "
                "in the token server's namespace",
            )
    return None


def _jwks_uris_reachable(spec: AccountSpec, ctx: AccountContext) -> Outcome | None:
    """A jwksUri naming an address the token server never fetches from (loopback, link-local,
    the cluster's networks, see kubemint.api.addresses) is said here; a name resolving there
    is refused only when fetched (the token server's log and metrics)."""
    for index, issuer in enumerate(spec.issuers):
        why = issuer.jwks_uri and literal_refusal(
            issuer.jwks_uri, ctx.cluster_networks, ctx.allowed_networks
        )
        if why:
            return Outcome(
                False,
                "JwksUriRefused",
                f"spec.federation.issuers[{index}].jwksUri: {why}; the token server does not "
                "fetch keys from inside the cluster",
            )
    return None


def _jwks_uris_within_quota(spec: AccountSpec, ctx: AccountContext) -> Outcome | None:
    """The token server fetches at most a set number of distinct jwksUris per namespace
    (older accounts' first), so that one namespace's URLs cost only that namespace; a URI over
    the quota is never fetched and its issuer accepts nothing."""
    if ctx.admitted_jwks_uris is None:
        return None
    for index, issuer in enumerate(spec.issuers):
        if issuer.jwks_uri and issuer.jwks_uri not in ctx.admitted_jwks_uris:
            return Outcome(
                False,
                "TooManyJwksUris",
                f"spec.federation.issuers[{index}].jwksUri: namespace {spec.namespace} already "
                f"has {ctx.jwks_uris_per_namespace} distinct jwksUris in older ServiceAccounts "
                "(the token server's limit per namespace); this one is not fetched. Reuse one, "
                "use jwksSecretRef, or ask the cluster admins for a TrustedIssuer",
            )
    return None


def _issuer_keys_valid(spec: AccountSpec, ctx: AccountContext) -> Outcome | None:
    try:
        issuer_keys(spec, ctx)
    except InvalidJWKS as exc:
        return Outcome(False, "InvalidIssuerKeys", str(exc))
    except LookupError as exc:
        return Outcome(False, "IssuerKeysNotFound", str(exc.args[0]))
    return None


CHECKS: tuple[Check[AccountSpec, AccountContext], ...] = (
    _claims_allowed,
    _clients_exist,
    _has_credentials,
    _grants_usable,
    _issuer_conditions_compile,
    _kubernetes_accounts_exist,
    _trusted_issuers_exist,
    _jwks_uris_reachable,
    _jwks_uris_within_quota,
    _issuer_keys_valid,
)


def check_account(spec: AccountSpec, context: AccountContext) -> Outcome:
    return evaluate(CHECKS, spec, context)


def issuer_keys(spec: AccountSpec, ctx: AccountContext) -> dict[str, dict[str, Any]]:
    """issuer URL → public JWKS copied from referenced Secrets (for the token server)."""
    out: dict[str, dict[str, Any]] = {}
    for index, issuer in enumerate(spec.issuers):
        if issuer.jwks_secret_ref is None:
            continue
        name, key = issuer.jwks_secret_ref
        field = f"spec.federation.issuers[{index}].jwksSecretRef"
        text = ctx.issuer_key_texts.get((name, key))
        if text is None:
            raise LookupError(f"{field}: Secret {spec.namespace}/{name} with key {key} not found")
        out[issuer.issuer] = parse_key_document(text, f"{field} (Secret {name} key {key})")
    return out


def federation_status(spec: AccountSpec, ctx: AccountContext) -> dict[str, Any] | None:
    """What the account accepts, for `kubectl get -o yaml`: the projected-token subjects, the
    TrustedIssuers with their issuer URLs, and its own issuers with where their keys come
    from."""
    if not spec.federated:
        return None
    status: dict[str, Any] = {
        "kubernetes": [
            {
                "serviceAccountName": name,
                "subject": f"system:serviceaccount:{spec.namespace}:{name}",
                "found": name in ctx.kubernetes_accounts,
            }
            for name in spec.kubernetes
        ],
        "issuers": [
            {
                "issuer": issuer.issuer,
                "keys": "jwksUri" if issuer.jwks_uri else "jwksSecretRef",
            }
            for issuer in spec.issuers
        ],
    }
    if spec.trusted_issuers:
        status["trustedIssuers"] = [_trusted_status(r.name, ctx) for r in spec.trusted_issuers]
    return status


def _trusted_status(name: str, ctx: AccountContext) -> dict[str, Any]:
    issuer = ctx.trusted_issuers.get(name)
    return {"name": name, "found": issuer is not None, **({"issuer": issuer} if issuer else {})}


def password_policy(app: AppPasswordSpec) -> SecretPolicy:
    return SecretPolicy(rotate_every=app.rotate_every, overlap=app.overlap)


def verification_record(
    spec: AccountSpec, plan: SecretPlan | None, keys: Mapping[str, Any], owner: Owner
) -> AccountRecord:
    return AccountRecord(
        owner=owner,
        subject=spec.subject,
        username=spec.name,
        passwords=plan.generations if plan else (),
        issuer_keys=dict(keys),
    )
