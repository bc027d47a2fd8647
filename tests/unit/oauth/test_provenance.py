"""A token stands only while the objects it was issued for do: the same client, account and
Kubernetes ServiceAccount (by uid), none disabled; tokens without the claim by name."""

from __future__ import annotations

from typing import Any

import pytest

from kubemint.oauth.provenance import kubernetes_uid, provenance_claim, withdrawn
from kubemint.store.snapshot import Snapshot, build_snapshot

CLIENT_UID, ACCOUNT_UID, WORKER_UID = "uid-gw", "uid-robot", "uid-worker"
ACCOUNT = "kubemint:serviceaccount:tasks:robot"


def _snapshot(
    *,
    client: dict[str, Any] | None = None,
    account: dict[str, Any] | None = None,
    client_uid: str = CLIENT_UID,
    account_uid: str = ACCOUNT_UID,
    worker_uid: str | None = WORKER_UID,
    accounts: bool = True,
) -> Snapshot:
    created = "2026-01-01T00:00:00Z"
    clients = [
        {
            "metadata": {"namespace": "tasks", "name": "gw", "uid": client_uid,
                         "creationTimestamp": created},
            "spec": {"audiences": ["https://api.test"], **(client or {})},
        },
        {
            "metadata": {"namespace": "tasks", "name": "other", "uid": "uid-other",
                         "creationTimestamp": created},
            "spec": {"audiences": ["https://api.test"]},
        },
    ]  # fmt: skip
    robot = {
        "metadata": {"namespace": "tasks", "name": "robot", "uid": account_uid},
        "spec": {
            "clients": ["gw"],
            "federation": {"kubernetes": [{"serviceAccountName": "worker"}]},
            **(account or {}),
        },
    }
    kubernetes = [{"metadata": {"namespace": "tasks", "name": "worker", "uid": worker_uid}}]
    return build_snapshot(
        server_namespace="kubemint-system",
        clients=clients,
        accounts=[robot] if accounts else [],
        rules=[],
        signing_keys=[],
        secrets=[],
        kubernetes_accounts=kubernetes if worker_uid else [],
    )


def _claims(
    sub: str = "tasks.gw", client_id: str = "tasks.gw", **provenance: Any
) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": sub, "client_id": client_id}
    if provenance:
        claims["kubemint.io"] = provenance
    return claims


CLIENT = {"client": {"uid": CLIENT_UID}}
ROBOT = {**CLIENT, "serviceaccount": {"uid": ACCOUNT_UID}}
WORKER = {**ROBOT, "kubernetes": {"serviceaccount": {"uid": WORKER_UID}}}


@pytest.mark.parametrize(
    ("claims", "snapshot", "why"),
    [
        (_claims(**CLIENT), {}, None),
        (_claims(ACCOUNT, **ROBOT), {}, None),
        (_claims(ACCOUNT, **WORKER), {}, None),
        (_claims(), {}, None),
        (_claims(ACCOUNT), {}, None),
        (_claims(**CLIENT), {"client": {"disabled": True}}, "the client is disabled"),
        (_claims(client_id="tasks.gone", **CLIENT), {}, "the client no longer exists"),
        (_claims(**CLIENT), {"client_uid": "uid-new"}, "it was re-created"),
        (_claims(client_id="tasks.other", **CLIENT), {}, "it was re-created"),
        (_claims(ACCOUNT, **ROBOT), {"accounts": False}, "the ServiceAccount no longer exists"),
        (_claims(ACCOUNT, **ROBOT), {"account_uid": "uid-new"}, "no longer exists"),
        (_claims(ACCOUNT, **ROBOT), {"account": {"disabled": True}}, "is disabled"),
        (_claims(ACCOUNT, **ROBOT), {"account": {"clients": ["other"]}}, "no longer uses"),
        (_claims(ACCOUNT, **WORKER), {"worker_uid": None}, "Kubernetes ServiceAccount"),
        (_claims(ACCOUNT, **WORKER), {"worker_uid": "uid-new"}, "Kubernetes ServiceAccount"),
        (
            _claims(ACCOUNT, **WORKER),
            {"account": {"federation": {}}},
            "no longer federated",
        ),
        (_claims(ACCOUNT), {"accounts": False}, "the ServiceAccount no longer exists"),
        (_claims(ACCOUNT), {"account": {"disabled": True}}, "is disabled"),
        (_claims(), {"client": {"disabled": True}}, "the client is disabled"),
    ],
    ids=[
        "the client's own token stands",
        "an account's token stands",
        "a token exchanged for a projected token stands",
        "a token without the claim stands by name",
        "an account's token without the claim stands by name",
        "a disabled client's token is withdrawn",
        "a deleted client's token is withdrawn",
        "a re-created client does not revive the old client's token",
        "another object holding the client id later does not inherit the token",
        "a deleted account's token is withdrawn",
        "a re-created account does not revive the old account's token",
        "a disabled account's token is withdrawn",
        "an account that stopped using the client loses that client's tokens",
        "a deleted Kubernetes ServiceAccount's exchanged token is withdrawn",
        "a re-created Kubernetes ServiceAccount does not revive it",
        "an account that stopped federating the Kubernetes ServiceAccount loses it",
        "without the claim a deleted account's token is withdrawn by name",
        "without the claim a disabled account's token is withdrawn by name",
        "without the claim a disabled client's token is withdrawn by name",
    ],
)
def test_whether_a_token_still_stands(
    claims: dict[str, Any], snapshot: dict[str, Any], why: str | None
) -> None:
    reason = withdrawn(claims, _snapshot(**snapshot))
    if why is None:
        assert reason is None
    else:
        assert reason is not None
        assert why in reason


def test_the_claim_names_the_objects_by_uid() -> None:
    snapshot = _snapshot()
    client, account = snapshot.clients["tasks.gw"], snapshot.accounts[("tasks", "robot")]
    assert provenance_claim(client, None) == CLIENT
    assert provenance_claim(client, account) == ROBOT
    assert provenance_claim(client, account, WORKER_UID) == WORKER
    assert provenance_claim(client, None, WORKER_UID) == CLIENT  # no account: nothing to bind


def test_a_projected_token_names_its_service_account_uid() -> None:
    claims = {"kubernetes.io": {"namespace": "tasks", "serviceaccount": {"name": "w", "uid": "u"}}}
    assert kubernetes_uid(claims) == "u"
    assert kubernetes_uid({"kubernetes.io": {"serviceaccount": {"name": "w"}}}) is None
    assert kubernetes_uid({"kubernetes.io": "garbage"}) is None
    assert kubernetes_uid({}) is None


def test_the_view_keeps_only_federated_kubernetes_service_accounts() -> None:
    snapshot = build_snapshot(
        server_namespace="s",
        clients=[],
        accounts=[
            {
                "metadata": {"namespace": "tasks", "name": "robot"},
                "spec": {"federation": {"kubernetes": [{"serviceAccountName": "worker"}]}},
            }
        ],
        rules=[],
        signing_keys=[],
        secrets=[],
        kubernetes_accounts=[
            {"metadata": {"namespace": "tasks", "name": "worker", "uid": "u1"}},
            {"metadata": {"namespace": "tasks", "name": "default", "uid": "u2"}},
            {"metadata": {"namespace": "other", "name": "worker", "uid": "u3"}},
        ],
    )
    assert snapshot.kubernetes_accounts == {("tasks", "worker"): "u1"}
