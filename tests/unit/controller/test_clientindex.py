"""The one index over OAuth2Clients: what each client puts in it, and the lookups of each use."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from typing import Any

from kubemint.api.meta import KIND_ACCOUNT, KIND_CLIENT, ObjectRef
from kubemint.controller.handlers import clientindex

CREATED = "2026-12-01T10:00:00Z"


def client(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    meta = {"namespace": namespace, "name": name, "creationTimestamp": CREATED}
    return {"metadata": meta, "spec": spec}


def index_of(*bodies: dict[str, Any]) -> dict[Hashable, list[Any]]:
    """What kopf builds: every client's value under each of its keys."""
    index: dict[Hashable, list[Any]] = defaultdict(list)
    for body in bodies:
        for key, value in clientindex.entries(body).items():
            index[key].append(value)
    return index


def test_a_default_client_is_found_by_every_lookup() -> None:
    index = index_of(client("team-a", "billing"))

    assert clientindex.claimants(index, "team-a.billing") == [(CREATED, "team-a", "billing")]
    assert clientindex.exists(index, ObjectRef(KIND_CLIENT, "team-a", "billing"))
    assert clientindex.lifetimes(index, "default") == [("team-a/billing", 900.0)]
    assert clientindex.grants(index, "team-a") == [("billing", ("client_credentials",))]


def test_lookups_of_one_kind_never_see_another_kinds_entries() -> None:
    """A namespace and a signing key may be spelt alike; a client and an account may share
    namespace and name."""
    index = index_of(client("team-a", "x", signingKey="team-a"))

    assert clientindex.claimants(index, "team-a") == []
    assert clientindex.lifetimes(index, "team-a") == [("team-a/x", 900.0)]
    assert clientindex.grants(index, "team-a") == [("x", ("client_credentials",))]
    assert clientindex.lifetimes(index, "default") == []
    assert not clientindex.exists(index, ObjectRef(KIND_ACCOUNT, "team-a", "x"))


def test_a_client_id_outside_its_namespace_claims_nothing() -> None:
    index = index_of(client("team-a", "squatter", clientId="team-b.api"))

    assert clientindex.claimants(index, "team-b.api") == []
    assert clientindex.exists(index, ObjectRef(KIND_CLIENT, "team-a", "squatter"))


def test_an_unusable_token_lifetime_keeps_the_client_out_of_key_retention_only() -> None:
    index = index_of(client("team-a", "odd", tokenLifetime="99999999999999999999h"))

    assert clientindex.lifetimes(index, "default") == []
    assert clientindex.claimants(index, "team-a.odd") == [(CREATED, "team-a", "odd")]


def test_clients_sharing_a_key_and_a_namespace_are_all_listed() -> None:
    index = index_of(
        client("team-a", "one", tokenLifetime="1h", grantTypes=["password"]),
        client("team-a", "two", signingKey="other"),
        client("team-b", "three", tokenLifetime="30s"),
    )

    assert clientindex.lifetimes(index, "default") == [
        ("team-a/one", 3600.0),
        ("team-b/three", 30.0),
    ]
    assert clientindex.lifetimes(index, "other") == [("team-a/two", 900.0)]
    assert clientindex.grants(index, "team-a") == [
        ("one", ("password",)),
        ("two", ("client_credentials",)),
    ]
