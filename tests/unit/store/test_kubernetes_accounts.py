"""The cluster-wide ServiceAccount watch costs what kubemint uses: metadata only, listed in
pages, three strings kept per object, and a rebuild only for federated ServiceAccounts."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from kubemint.store import kubernetes_accounts
from kubemint.store.informer import METADATA_LIST, METADATA_WATCH, Informer


def _sa(namespace: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": uid,
            "resourceVersion": "7",
            "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {}}],
        },
    }


class Pages:
    """A list function serving `items` in pages of `limit`, as the API server does."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> SimpleNamespace:
        self.calls.append(kwargs)
        start = int(kwargs.get("_continue") or 0)
        end = start + kwargs.get("limit", len(self.items))
        metadata = {"resourceVersion": "42"}
        if end < len(self.items):
            metadata["continue"] = str(end)
        page = {"metadata": metadata, "items": self.items[start:end]}
        return SimpleNamespace(data=json.dumps(page).encode())


def _informer(pages: Pages, federated: set[tuple[str, str]], changes: list[int]) -> Informer:
    return Informer(
        "kubernetes-serviceaccounts",
        pages,
        on_change=lambda: changes.append(1),
        metadata_only=True,
        transform=kubernetes_accounts.reduce,
        relevant=lambda body: kubernetes_accounts.key(body) in federated,
        page_size=2,
    )


def test_the_list_is_paged_metadata_only_and_reduced_to_namespace_name_and_uid() -> None:
    pages = Pages([_sa("ns", f"sa{i}", f"u{i}") for i in range(5)])
    informer = _informer(pages, set(), [])
    assert informer._relist() == "42"
    assert [c.get("_continue") for c in pages.calls] == [None, "2", "4"]
    assert all(c["limit"] == 2 for c in pages.calls)
    assert all(c["_headers"] == METADATA_LIST for c in pages.calls)
    listed = informer.changes()
    assert listed.full
    assert listed.bodies["ns/sa0"] == {"metadata": {"namespace": "ns", "name": "sa0", "uid": "u0"}}
    assert len(listed.bodies) == 5
    # The watch asks for single objects' metadata (the list's media type would get no events).
    assert informer._common(METADATA_WATCH)["_headers"] == METADATA_WATCH


def test_only_changes_to_federated_service_accounts_wake_the_rebuild() -> None:
    changes: list[int] = []
    informer = _informer(Pages([]), {("tasks", "worker")}, changes)
    informer._apply("ADDED", _sa("ci", "runner-1", "u1"))
    informer._apply("DELETED", _sa("ci", "runner-1", "u1"))
    assert changes == []
    informer._apply("ADDED", _sa("tasks", "worker", "u2"))
    assert changes == [1]
    informer._apply("DELETED", _sa("tasks", "worker", "u2"))
    assert changes == [1, 1]
    assert informer.changes().bodies == {"ci/runner-1": None, "tasks/worker": None}  # deleted


def test_federated_names_come_from_every_account_s_kubernetes_federation() -> None:
    accounts = [
        {
            "metadata": {"namespace": "tasks", "name": "a"},
            "spec": {
                "federation": {
                    "kubernetes": [{"serviceAccountName": "worker"}, {"serviceAccountName": "x"}]
                }
            },
        },
        {"metadata": {"namespace": "ci", "name": "b"}, "spec": {"federation": {"issuers": []}}},
        {"metadata": {"namespace": "bad", "name": "c"}, "spec": {"federation": {"kubernetes": 3}}},
    ]
    assert kubernetes_accounts.federated_names(accounts) == {("tasks", "worker"), ("tasks", "x")}
