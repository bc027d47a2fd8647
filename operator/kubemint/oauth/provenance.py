"""What a token was issued on the strength of, and whether that still holds (no I/O).

kubemint keeps no token store: a token stays cryptographically valid until it expires. So
that disabling or deleting an identity stops its tokens at once where kubemint decides
(introspection and forward-auth), every token names the objects it was issued for in a
private claim, and those are checked against the live view on every use:

    "kubemint.io": {"client": {"uid": "…"},
                    "serviceaccount": {"uid": "…"},                  # a kubemint account
                    "kubernetes": {"serviceaccount": {"uid": "…"}}}  # its projected token

A token stands while its client (by `client_id`) exists, is not disabled and is the same
object (uid); its kubemint ServiceAccount (by `sub`), if any, too, and still uses the client;
and the Kubernetes ServiceAccount whose projected token it was exchanged for, if any, is still
federated by that account with the same uid. Names alone would let a deleted and re-created
object of the same name revive old tokens; uids, unlike timestamps, need no clock agreement
between the API server and the token server. Tokens without the claim (issued before it
existed) are checked by name only.

Resource servers that verify JWTs offline do not see any of this: they learn of a deletion
only when the token expires (`tokenLifetime`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubemint.store.snapshot import AccountView, ClientView, Snapshot

CLAIM = "kubemint.io"


def provenance_claim(
    client: ClientView, account: AccountView | None, kubernetes_uid: str | None = None
) -> dict[str, Any]:
    """The claim for a token issued to `client` (and `account`, and through a projected
    token of the Kubernetes ServiceAccount with `kubernetes_uid`)."""
    claim: dict[str, Any] = {}
    if client.uid:
        claim["client"] = {"uid": client.uid}
    if account is not None and account.uid:
        claim["serviceaccount"] = {"uid": account.uid}
    if account is not None and kubernetes_uid:
        claim["kubernetes"] = {"serviceaccount": {"uid": kubernetes_uid}}
    return claim


def kubernetes_uid(claims: Mapping[str, Any]) -> str | None:
    """The ServiceAccount uid of a bound projected token (`kubernetes.io.serviceaccount.uid`,
    which the API server puts in every token it issues through TokenRequest)."""
    return _uid(_path(claims, "kubernetes.io", "serviceaccount"))


def withdrawn(claims: Mapping[str, Any], snapshot: Snapshot) -> str | None:
    """Why a token kubemint issued no longer stands, or None while it does."""
    provenance = claims.get(CLAIM)
    issued: Mapping[str, Any] = provenance if isinstance(provenance, Mapping) else {}
    client = snapshot.clients.get(str(claims.get("client_id")))
    if client is None:
        return "the client no longer exists"
    if not _same(client.uid, _uid(issued.get("client"))):
        return "the client no longer exists (it was re-created)"
    if client.disabled:
        return "the client is disabled"
    subject = str(claims.get("sub", ""))
    if "serviceaccount" not in issued and (issued or subject == client.client_id):
        return None  # the client's own token
    return _account_withdrawn(subject, issued, client, snapshot)


def _account_withdrawn(
    subject: str, issued: Mapping[str, Any], client: ClientView, snapshot: Snapshot
) -> str | None:
    account = snapshot.accounts_by_subject.get(subject)
    if account is None or not _same(account.uid, _uid(issued.get("serviceaccount"))):
        return "the ServiceAccount no longer exists"
    if account.disabled:
        return "the ServiceAccount is disabled"
    if account.ref.namespace != client.ref.namespace or client.ref.name not in account.clients:
        return "the ServiceAccount no longer uses this client"
    wanted = _uid(_path(issued, "kubernetes", "serviceaccount"))
    if wanted is not None:
        live = {
            snapshot.kubernetes_accounts.get((account.ref.namespace, name))
            for name in account.kubernetes
        }
        if wanted not in live:
            return "the Kubernetes ServiceAccount no longer exists or is no longer federated"
    return None


def _same(live: str, issued: str | None) -> bool:
    """The live object is the one the token names (tokens and views without uids: by name)."""
    return issued is None or not live or live == issued


def _path(claims: Mapping[str, Any], *keys: str) -> Any:
    value: Any = claims
    for k in keys:
        value = value.get(k) if isinstance(value, Mapping) else None
    return value


def _uid(value: Any) -> str | None:
    uid = value.get("uid") if isinstance(value, Mapping) else None
    return uid if isinstance(uid, str) and uid else None
