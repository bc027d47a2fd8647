"""The Kubernetes ServiceAccounts the token server must know about, cheaply.

A projected token stays cryptographically valid after its ServiceAccount is deleted (until it
expires, up to 48 h); only the ServiceAccount's uid in the token's `kubernetes.io` claim tells
it from the live object. So the token server watches ServiceAccounts cluster-wide and accepts
a projected token only while a ServiceAccount with that namespace, name and uid exists.

A cluster may hold tens of thousands of ServiceAccounts (one per namespace at least) of which
kubemint uses a few. The watch therefore asks for metadata only (PartialObjectMetadata: no
`secrets` or `imagePullSecrets` lists), pages the initial list, keeps three strings per
object, and wakes the snapshot rebuild only for the ServiceAccounts that some kubemint
ServiceAccount federates: churn elsewhere in the cluster costs a dict update, not a rebuild.

Pods are deliberately not watched, although a token bound to a deleted pod is what TokenReview
would also refuse: pods are the most numerous and most changing objects of a cluster (every
rollout and Job), watching them would wake the token server for every pod event anywhere and
need the right to list every pod, and the gain is small: a bound token lives at most its
`expirationSeconds` (1 h by default), and deleting the ServiceAccount, or disabling the
kubemint ServiceAccount, stops a compromised workload at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Body = dict[str, Any]

PAGE_SIZE = 500


def reduce(body: Body) -> Body:
    """The part of a ServiceAccount kept in memory: namespace, name and uid."""
    meta = body.get("metadata") or {}
    return {
        "metadata": {
            "namespace": meta.get("namespace", ""),
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
        }
    }


def federated_names(accounts: Iterable[Body]) -> frozenset[tuple[str, str]]:
    """(namespace, name) of every Kubernetes ServiceAccount that kubemint ServiceAccounts
    federate (`spec.federation.kubernetes`), read from the raw objects: a change to any of
    these must rebuild the snapshot, a change to any other need not."""
    names: set[tuple[str, str]] = set()
    for body in accounts:
        namespace = (body.get("metadata") or {}).get("namespace", "")
        federation = (body.get("spec") or {}).get("federation")
        entries = federation.get("kubernetes") if isinstance(federation, dict) else None
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, dict) and isinstance(entry.get("serviceAccountName"), str):
                names.add((namespace, entry["serviceAccountName"]))
    return frozenset(names)


def key(body: Body) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")
