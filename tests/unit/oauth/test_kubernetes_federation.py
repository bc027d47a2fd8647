"""A projected ServiceAccount token authenticates only while its ServiceAccount exists: the
uid in its `kubernetes.io` claim must be the live ServiceAccount's (what a TokenReview would
check), and the tokens kubemint issues for it name that uid."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import pytest

from kubemint.crypto import keys
from kubemint.crypto.jwt import Signer
from kubemint.oauth.client_auth import Caller
from kubemint.oauth.errors import InvalidClient
from kubemint.oauth.federation import (
    Federated,
    FederationContext,
    federated_account,
)
from kubemint.oauth.policy import Grant
from kubemint.oauth.tokens import access_token_claims
from kubemint.store.snapshot import Snapshot, build_snapshot

ISSUER = "https://kubemint.test"
CLUSTER = "https://127.0.0.1:6443"
CLUSTER_KEY = keys.generate("ES256")


class ClusterKeys:
    def get(self, name: str) -> tuple[str | None, Mapping[str, Any] | None]:
        if name == "kubernetes":
            return CLUSTER, {"keys": [CLUSTER_KEY.public_jwk()]}
        return None, None

    def want_refresh(self, name: str) -> None:
        return None


def _ctx() -> FederationContext:
    return FederationContext(ClusterKeys(), ISSUER, time.time())


def _snapshot(live: dict[str, str]) -> Snapshot:
    return build_snapshot(
        server_namespace="kubemint-system",
        clients=[
            {
                "metadata": {
                    "namespace": "tasks",
                    "name": "pods",
                    "uid": "uid-pods",
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                },
                "spec": {"audiences": ["https://api.test"], "authMethod": "none"},
            }
        ],
        accounts=[
            {
                "metadata": {"namespace": "tasks", "name": "worker", "uid": "uid-account"},
                "spec": {
                    "clients": ["pods"],
                    "federation": {"kubernetes": [{"serviceAccountName": "worker"}]},
                },
            }
        ],
        rules=[],
        signing_keys=[],
        secrets=[],
        kubernetes_accounts=[
            {"metadata": {"namespace": "tasks", "name": name, "uid": uid}}
            for name, uid in live.items()
        ],
    )


def _projected(uid: str | None, name: str = "worker") -> str:
    now = int(time.time())
    service_account = {"name": name, **({"uid": uid} if uid else {})}
    claims = {
        "iss": CLUSTER,
        "sub": f"system:serviceaccount:tasks:{name}",
        "aud": [ISSUER],
        "iat": now,
        "exp": now + 600,
        "kubernetes.io": {"namespace": "tasks", "serviceaccount": service_account},
    }
    return Signer(CLUSTER_KEY).sign(claims, typ="JWT")


def _federate(snapshot: Snapshot, token: str) -> Federated:
    return federated_account(token, snapshot.clients["tasks.pods"], snapshot, _ctx(), InvalidClient)


def test_a_projected_token_of_the_live_service_account_authenticates_its_account() -> None:
    found = _federate(_snapshot({"worker": "uid-1"}), _projected("uid-1"))
    assert found.account.subject == "kubemint:serviceaccount:tasks:worker"
    assert found.kubernetes_uid == "uid-1"


@pytest.mark.parametrize(
    ("live", "uid"),
    [({}, "uid-1"), ({"worker": "uid-2"}, "uid-1"), ({"worker": "uid-1"}, None)],
    ids=[
        "a deleted ServiceAccount's token is refused",
        "a re-created ServiceAccount does not accept the old one's token",
        "a token without a ServiceAccount uid is refused",
    ],
)
def test_a_projected_token_needs_its_own_live_service_account(
    live: dict[str, str], uid: str | None
) -> None:
    with pytest.raises(InvalidClient, match="ServiceAccount no longer exists") as raised:
        _federate(_snapshot(live), _projected(uid))
    assert raised.value.status_code == 401


def test_a_service_account_no_account_federates_is_still_just_not_federated() -> None:
    with pytest.raises(InvalidClient, match="not federated with this client"):
        _federate(_snapshot({"stranger": "uid-s"}), _projected("uid-s", "stranger"))


def test_another_issuers_kubernetes_claim_names_no_service_account_here() -> None:
    """Only a projected token of this cluster ties a token to a Kubernetes ServiceAccount:
    a `kubernetes.io` claim in another issuer's JWT is not read as one."""
    snapshot = _snapshot({"worker": "uid-1"})
    caller = Caller(
        snapshot.clients["tasks.pods"],
        "federated_assertion",
        account=snapshot.accounts[("tasks", "worker")],
        claims={"iss": "https://other.test", "kubernetes.io": {"serviceaccount": {"uid": "u"}}},
    )
    claims = access_token_claims(caller, Grant("https://api.test", ("read",)), ISSUER, 0)
    assert "kubernetes" not in claims["kubemint.io"]


def test_tokens_issued_for_a_projected_token_name_the_objects_they_are_for() -> None:
    snapshot = _snapshot({"worker": "uid-1"})
    found = _federate(snapshot, _projected("uid-1"))
    caller = Caller(
        snapshot.clients["tasks.pods"],
        "federated_assertion",
        account=found.account,
        claims=found.claims,
        kubernetes_uid=found.kubernetes_uid,
    )
    claims = access_token_claims(caller, Grant("https://api.test", ("read",)), ISSUER, 0)
    assert claims["kubemint.io"] == {
        "client": {"uid": "uid-pods"},
        "serviceaccount": {"uid": "uid-account"},
        "kubernetes": {"serviceaccount": {"uid": "uid-1"}},
    }


def test_an_account_cannot_set_the_provenance_claim_itself() -> None:
    snapshot = _snapshot({})
    account = snapshot.accounts[("tasks", "worker")]
    forged = dataclasses.replace(account, claims={"kubemint.io": {"client": "x"}})
    caller = Caller(snapshot.clients["tasks.pods"], "app_password", account=forged)
    claims = access_token_claims(caller, Grant("https://api.test", ()), ISSUER, 0)
    assert claims["kubemint.io"] == {
        "client": {"uid": "uid-pods"},
        "serviceaccount": {"uid": "uid-account"},
    }
