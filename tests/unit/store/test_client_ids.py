"""The token server decides who holds a client id with the operator's own rule: the oldest
claimant; same-second claimants are contested and nobody authenticates as that id. A client
whose explicit id lies outside its namespace (admitted by an older CRD) holds nothing."""

from __future__ import annotations

from typing import Any

import pytest

from kubemint.store.snapshot import build_snapshot

S0, S1 = "2026-11-22T10:00:00Z", "2026-11-22T10:00:01Z"
SHARED = "tasks.shared"


def _client(
    namespace: str, name: str, created: str, client_id: str | None = SHARED
) -> dict[str, Any]:
    spec: dict[str, Any] = {"audiences": ["https://api.test"]}
    if client_id is not None:
        spec["clientId"] = client_id
    return {
        "metadata": {"namespace": namespace, "name": name, "creationTimestamp": created},
        "spec": spec,
    }


def _clients(*clients: dict[str, Any]) -> dict[str, tuple[str, str]]:
    snapshot = build_snapshot(
        server_namespace="s", clients=clients, accounts=[], rules=[], signing_keys=[], secrets=[]
    )
    return {cid: (v.ref.namespace, v.ref.name) for cid, v in snapshot.clients.items()}


def _holder(*clients: dict[str, Any]) -> tuple[str, str] | None:
    return _clients(*clients).get(SHARED)


def test_the_oldest_claimant_holds_the_client_id() -> None:
    # `shared` derives tasks.shared; `svc` sets it explicitly, a second earlier.
    assert _holder(_client("tasks", "shared", S1, None), _client("tasks", "svc", S0)) == (
        "tasks",
        "svc",
    )


def test_same_second_claimants_hold_nothing() -> None:
    assert _holder(_client("tasks", "shared", S0, None), _client("tasks", "svc", S0)) is None
    assert _holder(_client("tasks", "svc", S0)) == ("tasks", "svc")


@pytest.mark.parametrize(
    "client_id",
    [SHARED, "kubemint:serviceaccount:tasks:runner", "legacy-id", "intruders", "intruders."],
    ids=[
        "another namespace's derived id",
        "a ServiceAccount's subject",
        "an id in no namespace",
        "its own namespace name alone",
        "its own namespace and a dot alone",
    ],
)
def test_a_client_with_an_id_outside_its_namespace_is_skipped(client_id: str) -> None:
    assert _clients(_client("intruders", "squat", S0, client_id)) == {}


def test_an_older_squatter_from_another_namespace_does_not_block_the_owner() -> None:
    """`intruders` created `tasks.shared` first (an older CRD admitted it); the client in
    `tasks` that derives that id later still holds it, and nothing authenticates as the
    squatter."""
    clients = _clients(_client("intruders", "squat", S0), _client("tasks", "shared", S1, None))
    assert clients == {SHARED: ("tasks", "shared")}
