"""One kopf index over OAuth2Clients, for every handler that looks clients up.

kopf runs each index handler on every event of every object, through its whole handler
machinery (kwargs, progress state, logging), and waits for all of them before a start handles
anything. Four indexes over clients (client ids, existence, signing-key lifetimes, grants per
namespace) cost four such runs per event: the largest share of kopf's indexing at 1,000
clients (py-spy), repeated for every object at every start. One index holds all four, each
under a key of its own shape, so lookups of one never see another's entries.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import kopf

from kubemint.api.meta import GROUP, KIND_CLIENT, VERSION, ObjectRef, parse_duration
from kubemint.api.oauth2client import (
    DEFAULT_GRANT_TYPES,
    DEFAULT_LIFETIME,
    DEFAULT_SIGNING_KEY,
    MAX_LIFETIME,
    claims_client_id,
    effective_client_id,
)

INDEX = "clients"
"""The handler kwarg (kopf index id) holding the entries below."""

Index = Mapping[Hashable, Iterable[Any]]


def _client_id(client_id: str) -> tuple[str, str]:
    return ("client-id", client_id)


def _signing_key(name: str) -> tuple[str, str]:
    return ("signing-key", name)


def _namespace(namespace: str) -> tuple[str, str]:
    return ("namespace", namespace)


def entries(body: Mapping[str, Any]) -> dict[Hashable, Any]:
    """The index entries of one client, from its raw fields (an index must never fail on
    one object's content)."""
    meta, spec = body["metadata"], body.get("spec") or {}
    namespace, name = meta["namespace"], meta["name"]
    found: dict[Hashable, Any] = {
        ObjectRef(KIND_CLIENT, namespace, name): True,
        _namespace(namespace): (name, tuple(spec.get("grantTypes") or DEFAULT_GRANT_TYPES)),
    }
    # A client whose explicit id lies outside its namespace (ClientIdOutsideNamespace) holds
    # no id and blocks nobody.
    if claims_client_id(namespace, spec):
        client_id = effective_client_id(namespace, name, spec)
        found[_client_id(client_id)] = (meta["creationTimestamp"], namespace, name)
    try:
        lifetime = parse_duration(
            spec.get("tokenLifetime", DEFAULT_LIFETIME), "spec.tokenLifetime", MAX_LIFETIME
        )
    except (ValueError, ArithmeticError, TypeError):
        pass  # reported on the client (InvalidSpec); it issues no tokens
    else:
        key = _signing_key(spec.get("signingKey", DEFAULT_SIGNING_KEY))
        found[key] = (f"{namespace}/{name}", lifetime.total_seconds())
    return found


def claimants(index: Index, client_id: str) -> list[tuple[str, str, str]]:
    """(creationTimestamp, namespace, name) of every client claiming `client_id`."""
    return list(index.get(_client_id(client_id), []))


def exists(index: Index, ref: ObjectRef) -> bool:
    return ref in index


def lifetimes(index: Index, signing_key: str) -> list[tuple[str, float]]:
    """("namespace/name", token lifetime seconds) of every client signing with the key."""
    return list(index.get(_signing_key(signing_key), []))


def grants(index: Index, namespace: str) -> list[tuple[str, tuple[str, ...]]]:
    """(name, grant types) of every client in `namespace`."""
    return list(index.get(_namespace(namespace), []))


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.index(GROUP, VERSION, "oauth2clients", id=INDEX, registry=registry)
    async def clients(*, body: kopf.Body, **_: Any) -> dict[Hashable, Any]:
        return entries(body)
