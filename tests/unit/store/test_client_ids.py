"""The token server decides who holds a client id with the operator's own rule: the oldest
claimant; same-second claimants are contested and nobody authenticates as that id."""

from __future__ import annotations

from typing import Any

from kubemint.store.snapshot import build_snapshot

S0, S1 = "2026-11-22T10:00:00Z", "2026-11-22T10:00:01Z"


def _client(namespace: str, name: str, created: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "creationTimestamp": created},
        "spec": {"clientId": "shared", "audiences": ["https://api.test"]},
    }


def _holder(*clients: dict[str, Any]) -> tuple[str, str] | None:
    snapshot = build_snapshot(
        server_namespace="s", clients=clients, accounts=[], rules=[], signing_keys=[], secrets=[]
    )
    view = snapshot.clients.get("shared")
    return None if view is None else (view.ref.namespace, view.ref.name)


def test_the_oldest_claimant_holds_the_client_id() -> None:
    assert _holder(_client("aaa", "intruder", S1), _client("tasks", "svc", S0)) == (
        "tasks",
        "svc",
    )


def test_same_second_claimants_hold_nothing() -> None:
    assert _holder(_client("aaa", "intruder", S0), _client("tasks", "svc", S0)) is None
    assert _holder(_client("tasks", "svc", S0)) == ("tasks", "svc")
