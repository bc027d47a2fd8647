"""Reconcile checks for OAuth2Clients, ServiceAccounts and AccessRules, first failure wins."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kubemint.api.accessrule import RuleClaim, audience_owner
from kubemint.api.meta import ObjectRef
from kubemint.api.oauth2client import ClientSpec, client_id_holder
from kubemint.api.serviceaccount import AccountSpec
from kubemint.crypto import keys
from kubemint.reconcile.oauth2clients import (
    ClientContext,
    check_client,
)
from kubemint.reconcile.serviceaccounts import AccountContext, check_account

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
PUBLIC = keys.generate("ES256").public_jwk()


def _client(**spec: Any) -> ClientSpec:
    body = {"metadata": {"namespace": "tasks", "name": "svc"}, "spec": {"audiences": ["a"], **spec}}
    return ClientSpec.from_body(body)


CTX = ClientContext({"default": "sig", "enc": "enc"}, "kubemint-system")


@pytest.mark.parametrize(
    ("spec", "context", "reason", "field"),
    [
        ({}, CTX, "Reconciled", ""),
        ({"signingKey": "gone"}, CTX, "SigningKeyNotFound", "spec.signingKey"),
        ({"signingKey": "enc"}, CTX, "SigningKeyWrongUse", "spec.signingKey"),
        ({"encryptionKey": "gone"}, CTX, "EncryptionKeyNotFound", "spec.encryptionKey"),
        ({"encryptionKey": "default"}, CTX, "EncryptionKeyWrongUse", "spec.encryptionKey"),
        (
            {"authMethod": "private_key_jwt", "jwksSecretRef": {"name": "k"}},
            CTX,
            "JWKSSecretNotFound",
            "spec.jwksSecretRef",
        ),
        (
            {"authMethod": "private_key_jwt", "jwks": {"keys": [{**PUBLIC, "d": "x"}]}},
            CTX,
            "InvalidJWKS",
            "spec.jwks.keys[0]",
        ),
        (
            {},
            ClientContext(
                {"default": "sig"},
                "kubemint-system",
                client_id_holder=ObjectRef("OAuth2Client", "other", "svc"),
            ),
            "ClientIdConflict",
            "metadata.name",
        ),
        (
            {"clientId": "tasks.shared"},
            ClientContext(
                {"default": "sig"},
                "kubemint-system",
                client_id_holder=ObjectRef("OAuth2Client", "tasks", "shared"),
            ),
            "ClientIdConflict",
            "spec.clientId: 'tasks.shared'",
        ),
        ({"clientId": "tasks.reporter"}, CTX, "Reconciled", ""),
        (
            {"clientId": "calendar.newsvc"},
            CTX,
            "ClientIdOutsideNamespace",
            "spec.clientId: 'calendar.newsvc' is outside this namespace's client ids: it must "
            "start with 'tasks.'",
        ),
        (
            {"clientId": "kubemint:serviceaccount:calendar:runner"},
            CTX,
            "ClientIdOutsideNamespace",
            "'tasks.'; the kubemint: prefix is reserved for the subjects of kubemint "
            "ServiceAccounts",
        ),
        (
            # Outside the namespace is refused before (and whatever) the holder says.
            {"clientId": "legacy-id"},
            ClientContext(
                {"default": "sig"},
                "kubemint-system",
                client_id_holder=ObjectRef("OAuth2Client", "tasks", "svc"),
            ),
            "ClientIdOutsideNamespace",
            "spec.clientId: 'legacy-id'",
        ),
        ({"clientId": "tasks."}, CTX, "ClientIdOutsideNamespace", "spec.clientId: 'tasks.'"),
        ({"clientId": "tasksx.svc"}, CTX, "ClientIdOutsideNamespace", "'tasks.'"),
    ],
    ids=[
        "a client with an existing signing key is ready",
        "a missing signing key is named",
        "an encryption key cannot sign",
        "a missing encryption key is named",
        "a signing key cannot encrypt",
        "a missing JWKS Secret is named",
        "a private key in jwks is refused",
        "a derived client id held by an older client conflicts on metadata.name",
        "an explicit client id held by an older client conflicts on spec.clientId",
        "an explicit client id in the client's own namespace is ready",
        "an explicit client id in another namespace's space is refused",
        "a client id equal to a ServiceAccount subject is refused and the prefix explained",
        "an explicit client id in no namespace is refused even when this client holds it",
        "the namespace prefix alone is not a client id",
        "a namespace whose name extends this one is another namespace",
    ],
)
def test_client_checks(
    spec: dict[str, Any], context: ClientContext, reason: str, field: str
) -> None:
    outcome = check_client(_client(**spec), context)
    assert outcome.reason == reason
    assert field in outcome.message


@pytest.mark.parametrize("spec", [{}, {"clientId": "tasks.shared"}], ids=["derived", "explicit"])
def test_a_client_id_conflict_does_not_reveal_the_holder(spec: dict[str, Any]) -> None:
    """The holder may live in a namespace the tenant cannot read: neither it nor its name
    appears, and the message names the field the id comes from (and only that one)."""
    holder = ObjectRef("OAuth2Client", "secret-team", "billing-gateway")
    context = ClientContext({"default": "sig"}, "kubemint-system", client_id_holder=holder)
    outcome = check_client(_client(**spec), context)
    assert outcome.reason == "ClientIdConflict"
    assert "secret-team" not in outcome.message
    assert "billing-gateway" not in outcome.message
    assert "already used by an older OAuth2Client" in outcome.message
    field = "spec.clientId" if spec else "metadata.name"
    assert outcome.message.startswith(f"{field}: ")
    if not spec:
        assert "spec.clientId:" not in outcome.message
        assert "'tasks.svc'" in outcome.message


def test_the_holder_of_a_client_id_is_not_in_conflict_with_itself() -> None:
    holder = ObjectRef("OAuth2Client", "tasks", "svc")
    context = ClientContext({"default": "sig"}, "kubemint-system", client_id_holder=holder)
    assert check_client(_client(), context).ready


S0, S1 = "2026-11-22T10:00:00Z", "2026-11-22T10:00:01Z"  # creationTimestamps


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ([], (None, False)),
        ([(S0, "tasks", "svc")], (ObjectRef("OAuth2Client", "tasks", "svc"), False)),
        (
            [(S1, "aaa", "intruder"), (S0, "tasks", "svc")],
            (ObjectRef("OAuth2Client", "tasks", "svc"), False),
        ),
        # Same second: no tie-break by a name the newcomer could choose ("aaa" sorts first).
        ([(S0, "aaa", "intruder"), (S0, "tasks", "svc")], (None, True)),
        ([(S0, "tasks", "derived"), (S0, "tasks", "holder"), (S1, "x", "y")], (None, True)),
    ],
)
def test_client_id_holder(
    claims: list[tuple[str, str, str]], expected: tuple[ObjectRef | None, bool]
) -> None:
    assert client_id_holder(claims) == expected


def test_a_contested_client_id_is_refused_to_every_claimant() -> None:
    context = ClientContext({"default": "sig"}, "kubemint-system", client_id_contested=True)
    outcome = check_client(_client(clientId="tasks.shared"), context)
    assert outcome.reason == "ClientIdConflict"
    assert outcome.message.startswith("spec.clientId: the client id 'tasks.shared' was claimed ")
    assert "same second" in outcome.message


def test_the_default_client_id_is_namespace_dot_name() -> None:
    assert _client().client_id == "tasks.svc"
    assert _client(clientId="tasks.custom").client_id == "tasks.custom"


def _account(**spec: Any) -> AccountSpec:
    return AccountSpec.from_body(
        {"metadata": {"namespace": "tasks", "name": "bot"}, "spec": {"clients": ["gw"], **spec}}
    )


PASSWORDS = {"appPasswords": {"secretName": "bot-password"}}
CI_ISSUER = {"issuer": "https://ci", "jwksUri": "https://ci/jwks"}
GW_ALL = {"gw": ("password", "client_credentials")}


@pytest.mark.parametrize(
    ("spec", "clients", "k8s", "reason", "field"),
    [
        (PASSWORDS, GW_ALL, (), "Reconciled", ""),
        (PASSWORDS, {}, (), "ClientNotFound", "spec.clients"),
        ({}, GW_ALL, (), "NoCredentials", "spec.appPasswords or spec.federation"),
        (
            PASSWORDS,
            {"gw": ("urn:ietf:params:oauth:grant-type:token-exchange",)},
            (),
            "GrantMismatch",
            "spec.appPasswords",
        ),
        (
            {"federation": {"kubernetes": [{"serviceAccountName": "pod"}]}},
            {"gw": ("password",)},
            ("pod",),
            "GrantMismatch",
            "spec.federation",
        ),
        (
            {"federation": {"kubernetes": [{"serviceAccountName": "pod"}]}},
            GW_ALL,
            (),
            "KubernetesServiceAccountNotFound",
            "spec.federation.kubernetes[0]",
        ),
        (
            {"federation": {"issuers": [{"issuer": "https://ci", "jwksSecretRef": {"name": "s"}}]}},
            GW_ALL,
            (),
            "IssuerKeysNotFound",
            "spec.federation.issuers[0].jwksSecretRef",
        ),
        (
            {"federation": {"issuers": [CI_ISSUER, {**CI_ISSUER, "when": "claims.ref == "}]}},
            GW_ALL,
            (),
            "InvalidExpression",
            "spec.federation.issuers[1].when: ",
        ),
        (
            {"federation": {"issuers": [{**CI_ISSUER, "when": "claim.ref == 'main'"}]}},
            GW_ALL,
            (),
            "InvalidExpression",
            "spec.federation.issuers[0].when: unknown variable claim; use request and claims",
        ),
        (
            {
                "federation": {
                    "issuers": [
                        {**CI_ISSUER, "when": "claims.ref == 'main' && request.subject != ''"}
                    ]
                }
            },
            GW_ALL,
            (),
            "Reconciled",
            "",
        ),
        (
            {**PASSWORDS, "claims": {"team": "tasks", "cost_center": 4711}},
            GW_ALL,
            (),
            "Reconciled",
            "",
        ),
        (
            {"federation": {"trustedIssuers": [{"name": "github"}]}},
            GW_ALL,
            (),
            "TrustedIssuerNotFound",
            "spec.federation.trustedIssuers[0].name: no TrustedIssuer github in the token "
            "server's namespace",
        ),
        (
            {"federation": {"trustedIssuers": [{"name": "gitlab", "when": "claims.ref =="}]}},
            GW_ALL,
            (),
            "InvalidExpression",
            "spec.federation.trustedIssuers[0].when: ",
        ),
        (
            {"federation": {"trustedIssuers": [{"name": "gitlab"}]}},
            {"gw": ("password",)},
            (),
            "GrantMismatch",
            "spec.federation",
        ),
        (
            {"federation": {"trustedIssuers": [{"name": "gitlab", "when": "claims.ref != ''"}]}},
            GW_ALL,
            (),
            "Reconciled",
            "",
        ),
        ({**PASSWORDS, "claims": {"scp": "admin"}}, GW_ALL, (), "ForbiddenClaims", "spec.claims: "),
        (
            {**PASSWORDS, "claims": {"team": "t", "roles": ["admin"], "acr": "2", "email": "x"}},
            GW_ALL,
            (),
            "ForbiddenClaims",
            "): acr, email, roles",
        ),
        ({**PASSWORDS, "claims": {"Roles": ["admin"]}}, GW_ALL, (), "ForbiddenClaims", "Roles"),
        (
            {**PASSWORDS, "claims": {"https://calendar.example.com/roles": ["admin"]}},
            GW_ALL,
            (),
            "ForbiddenClaims",
            "https://calendar.example.com/roles",
        ),
        (
            {**PASSWORDS, "claims": {"cognito:groups": "x"}},
            GW_ALL,
            (),
            "ForbiddenClaims",
            "cognito",
        ),
        ({"claims": {"groups": ["admins"]}}, {}, (), "ForbiddenClaims", "groups"),
    ],
    ids=[
        "an account with app passwords through a password client is ready",
        "a missing client is named",
        "an account without any credential is reported",
        "app passwords need a password-capable client",
        "federation needs an assertion-capable client",
        "a missing Kubernetes ServiceAccount is named",
        "a missing issuer key Secret is named",
        "an issuer condition that does not compile is named by index",
        "an issuer condition with an unknown variable is named",
        "an issuer condition over claims and request compiles",
        "plain custom claims are fine",
        "a TrustedIssuer the server namespace does not have is named",
        "a TrustedIssuer reference's condition that does not compile is named",
        "a TrustedIssuer alone needs an assertion-capable client",
        "an account naming an existing TrustedIssuer is ready",
        "an authorization claim is refused",
        "every refused claim is named, sorted",
        "a differently cased authorization claim is refused",
        "a URI claim name is refused",
        "a vendor:claim name is refused",
        "forbidden claims are reported before anything else",
    ],
)
def test_account_checks(
    spec: dict[str, Any],
    clients: dict[str, tuple[str, ...]],
    k8s: tuple[str, ...],
    reason: str,
    field: str,
) -> None:
    trusted = {"gitlab": "https://gitlab.example"}
    outcome = check_account(_account(**spec), AccountContext(clients, frozenset(k8s), {}, trusted))
    assert outcome.reason == reason
    assert field in outcome.message


def test_the_oldest_rule_owns_an_audience() -> None:
    later = T0 + datetime.timedelta(seconds=1)
    assert audience_owner([RuleClaim("b", "r", T0), RuleClaim("a", "r", later)]) == "b"
    assert audience_owner([RuleClaim("b", "r", T0), RuleClaim("b", "s", T0)]) == "b"
    assert audience_owner([]) is None


def test_namespaces_claiming_an_audience_in_the_same_second_own_nothing() -> None:
    """No tie-break an intruder could game (e.g. a namespace that sorts first)."""
    claims = [RuleClaim("calendar", "r", T0), RuleClaim("aaa-intruder", "r", T0)]
    assert audience_owner(claims) is None
