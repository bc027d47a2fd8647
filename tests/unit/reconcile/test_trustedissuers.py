"""TrustedIssuer checks: trusted only in the token server's namespace, inline keys must parse;
and what a ServiceAccount's status says about the TrustedIssuers it names."""

from __future__ import annotations

from typing import Any

import pytest

from kubemint.api.trustedissuer import TrustedIssuerSpec
from kubemint.crypto import keys
from kubemint.reconcile.serviceaccounts import AccountContext, AccountSpec, federation_status
from kubemint.reconcile.trustedissuers import IssuerContext, check_trusted_issuer

SERVER = "kubemint-system"
GITHUB = "https://token.actions.githubusercontent.com"
PUBLIC = keys.generate("ES256").public_jwk()


def _issuer(namespace: str = SERVER, **spec: Any) -> TrustedIssuerSpec:
    return TrustedIssuerSpec.from_body(
        {
            "metadata": {"namespace": namespace, "name": "github"},
            "spec": {"issuer": GITHUB, **spec},
        }
    )


@pytest.mark.parametrize(
    ("issuer", "ready", "reason", "message"),
    [
        (
            _issuer(jwksUri=GITHUB + "/.well-known/jwks"),
            True,
            "Reconciled",
            f"JWTs with iss {GITHUB} are verified with keys fetched by the token server from "
            "spec.jwksUri",
        ),
        (
            _issuer(jwks={"keys": [PUBLIC]}),
            True,
            "Reconciled",
            f"JWTs with iss {GITHUB} are verified with 1 key(s) from spec.jwks",
        ),
        (
            _issuer("team-a", jwks={"keys": [PUBLIC]}),
            False,
            "WrongNamespace",
            "metadata.namespace: TrustedIssuers are honoured only in the token server's "
            f"namespace {SERVER}; this one is trusted by nothing",
        ),
        (
            _issuer(jwks={"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}),
            False,
            "InvalidJWKS",
            "spec.jwks.keys[0]: not a valid EC public key",
        ),
        (
            _issuer(jwks={"keys": [{**PUBLIC, "d": "c2VjcmV0"}]}),
            False,
            "InvalidJWKS",
            "spec.jwks.keys[0]: contains private key material",
        ),
    ],
    ids=[
        "an issuer with a jwksUri in the server namespace is trusted",
        "an issuer with inline keys in the server namespace is trusted",
        "an issuer in a tenant's namespace is trusted by nothing",
        "inline keys that do not parse are named",
        "a private key in the inline keys is refused",
    ],
)
def test_trusted_issuer_checks(
    issuer: TrustedIssuerSpec, ready: bool, reason: str, message: str
) -> None:
    outcome = check_trusted_issuer(issuer, IssuerContext(SERVER))
    assert (outcome.ready, outcome.reason) == (ready, reason)
    assert outcome.message.startswith(message)


def test_an_account_s_status_lists_its_trusted_issuers_with_their_urls() -> None:
    spec = AccountSpec.from_body(
        {
            "metadata": {"namespace": "ci", "name": "runner"},
            "spec": {
                "clients": ["gw"],
                "federation": {
                    "trustedIssuers": [
                        {"name": "github", "subject": "repo:org/app"},
                        {"name": "gone"},
                    ]
                },
            },
        }
    )
    status = federation_status(spec, AccountContext({}, frozenset(), {}, {"github": GITHUB}))
    assert status is not None
    assert status["trustedIssuers"] == [
        {"name": "github", "found": True, "issuer": GITHUB},
        {"name": "gone", "found": False},
    ]
    assert spec.trusted_issuers[0].subject == "repo:org/app"
