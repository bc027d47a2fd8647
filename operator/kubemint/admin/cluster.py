"""What the admin commands read from the Kubernetes API, with the user's own kubeconfig.

Read-only and no Secrets: the commands answer from the custom resources, the server
namespace's audience records and revocation ConfigMaps, never from key material (a token is
verified with the public JWKS the issuer serves). A list the user may not make is a clear
`AdminError` naming the resource, the scope and the role to ask for (docs/admin.md), never a
traceback; a command may also ask for what it can do without (`optional`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from kubemint.admin.errors import AdminError
from kubemint.api import trustedissuer
from kubemint.api.audiences import SELECTOR as OWNERSHIP_SELECTOR
from kubemint.api.meta import GROUP, PLURALS, VERSION
from kubemint.store.revocations import SELECTOR as REVOCATIONS_SELECTOR

Body = dict[str, Any]
ADMIN_ROLE = "kubemint-admin-view"  # docs/admin.md: the ClusterRole an admin needs
KINDS = (*PLURALS, trustedissuer.KIND)
PLURAL_OF = {**PLURALS, trustedissuer.KIND: trustedissuer.PLURAL}


@dataclass
class Objects:
    """The objects one command reads; `unreadable` names what the user may not list."""

    by_kind: dict[str, list[Body]] = field(default_factory=dict)  # kind → bodies
    audience_records: list[Body] = field(default_factory=list)
    revocations: list[Body] = field(default_factory=list)
    kubernetes_accounts: list[Body] = field(default_factory=list)  # metadata only
    unreadable: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[Body]:
        return self.by_kind.get(kind, [])


def connect(kubeconfig: str | None, context: str | None) -> client.ApiClient:
    """An API client from the user's kubeconfig (KUBECONFIG, ~/.kube/config), as kubectl."""
    configuration = client.Configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    except (config.ConfigException, OSError, TypeError) as exc:
        raise AdminError(f"cannot load the kubeconfig: {exc}") from None
    return client.ApiClient(configuration)


class Reader:
    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def kind(self, kind: str, namespace: str | None) -> list[Body]:
        """Every object of a kubemint kind, in `namespace` or (None) in all namespaces."""
        plural = PLURAL_OF[kind]
        where = f"in namespace {namespace}" if namespace else "in all namespaces"
        if namespace:
            call = lambda: self.custom.list_namespaced_custom_object(  # noqa: E731
                GROUP, VERSION, namespace, plural
            )
        else:
            call = lambda: self.custom.list_cluster_custom_object(GROUP, VERSION, plural)  # noqa: E731
        items = _items(_call(call, f"list {plural}.{GROUP} {where}"))
        for body in items:  # list items may leave them out
            body.setdefault("kind", kind)
        return items

    def config_maps(self, namespace: str, selector: str, what: str) -> list[Body]:
        raw = _call(
            lambda: self.core.list_namespaced_config_map(
                namespace, label_selector=selector, _preload_content=False
            ),
            f"list configmaps in namespace {namespace} ({what})",
        )
        return _items(json.loads(raw.data))

    def kubernetes_accounts(self) -> list[Body]:
        """Kubernetes ServiceAccounts of every namespace (the view keeps the uids of those a
        kubemint ServiceAccount federates: a token exchanged for a projected token stands
        while that ServiceAccount does)."""
        raw = _call(
            lambda: self.core.list_service_account_for_all_namespaces(_preload_content=False),
            "list serviceaccounts in all namespaces",
        )
        return [{"metadata": b.get("metadata") or {}} for b in _items(json.loads(raw.data))]

    def read(
        self,
        *,
        kinds: Iterable[str],
        namespace: str | None,
        server_namespace: str,
        records: bool = False,
        revocations: bool = False,
        kubernetes_accounts: bool = False,
        optional: bool = False,
    ) -> Objects:
        """The kinds (TrustedIssuers: the server namespace's only, the only ones that count),
        and the server namespace's audience records and revocations when asked. With
        `optional`, what the user may not list is noted in `unreadable` instead of failing."""
        found = Objects()

        def attempt(name: str, call: Any) -> list[Body]:
            try:
                return list(call())
            except Forbidden as exc:
                if not optional:
                    raise
                found.unreadable.append(f"{name}: {exc.what}")
                return []

        for kind in kinds:
            where = server_namespace if kind == trustedissuer.KIND else namespace
            found.by_kind[kind] = attempt(
                PLURAL_OF[kind],
                lambda kind=kind, where=where: self.kind(kind, where),
            )
        if records:
            found.audience_records = attempt(
                "audience records",
                lambda: self.config_maps(server_namespace, OWNERSHIP_SELECTOR, "audience records"),
            )
        if revocations:
            found.revocations = attempt(
                "revocations",
                lambda: self.config_maps(server_namespace, REVOCATIONS_SELECTOR, "revocations"),
            )
        if kubernetes_accounts:
            found.kubernetes_accounts = attempt("serviceaccounts", self.kubernetes_accounts)
        return found


class Forbidden(AdminError):
    def __init__(self, what: str, status: int) -> None:
        self.what = what
        verb = "may not" if status == 403 else "is not authenticated to"
        super().__init__(
            f"you {verb} {what} (HTTP {status}); the read-only rights an admin needs are the "
            f"ClusterRole {ADMIN_ROLE} in docs/admin.md; with rights in one namespace only, "
            "give -n NAMESPACE (status)"
        )


def _call(call: Any, what: str) -> Any:
    try:
        return call()
    except ApiException as exc:
        if exc.status in (401, 403):
            raise Forbidden(what, exc.status) from None
        if exc.status == 404:
            raise AdminError(
                f"cannot {what}: not found (are the kubemint CRDs installed?)"
            ) from None
        raise AdminError(f"cannot {what}: HTTP {exc.status} {exc.reason}") from None
    except (HTTPError, OSError) as exc:
        raise AdminError(f"cannot reach the Kubernetes API to {what}: {exc}") from None


def _items(listing: Any) -> list[Body]:
    items = listing.get("items") if isinstance(listing, dict) else None
    return [i for i in items or () if isinstance(i, dict)]
