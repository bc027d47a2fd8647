"""The operator's kopf registry and settings: kubemint's names for finalizer and bookkeeping."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import kopf

from kubemint.api.meta import FINALIZER
from kubemint.controller import observe
from kubemint.controller.bookkeeping import StatusDigestDiffBase, UnmarkedProgressStorage
from kubemint.controller.handlers import (
    accessrules,
    clientindex,
    oauth2clients,
    serviceaccounts,
    signingkeys,
    trustedissuers,
)
from kubemint.controller.runtime import Runtime

KOPF_PREFIX = "operator.kubemint.io"
KOPF_CONNECTIONS = 48
"""Connections kopf may hold to the API server at once (its watch streams included). kopf's
own session has no limit: with thousands of objects in flight it opened hundreds of TLS
connections at once and the API server, busy with handshakes, answered nothing in time, the
Lease renewals included."""

LIST_PAGE = 500
"""Objects per page of kopf's LISTs (`limit`/`continue`): kopf keeps one page at a time."""


def bounded_session(info: kopf.ConnectionInfo) -> kopf.AiohttpSession:
    """The session kopf would build from `info`, with at most KOPF_CONNECTIONS connections
    (kopf logs in again, building a new one, when the API server answers 401)."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=KOPF_CONNECTIONS, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
        aiohttp_session=session,
    )


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    """Every handler. Indexers are `async def` although they do no I/O: kopf runs a sync
    handler in a thread pool, a round trip through a thread per index per event of every
    object (tens of thousands at 10,000 clients), which cost more than the indexing."""
    registry = kopf.OperatorRegistry()
    clientindex.register(registry)
    for module in (signingkeys, oauth2clients, serviceaccounts, accessrules, trustedissuers):
        module.register(registry, runtime)
    observe.register(registry, runtime.observer)

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
        # In-cluster service account or KUBECONFIG, resolved by the official client as
        # everywhere else in kubemint (a custom registry has no default login handler).
        info = kopf.login_via_client(**kwargs)
        return None if info is None else bounded_session(info)

    @kopf.on.startup(registry=registry)
    def configure(*, settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        # kopf's progress goes to annotations under its own prefix (kopf ignores every
        # annotation under a storage prefix when detecting changes, and kubemint.io/rotate
        # must count as a change); what it last handled is a digest in the status. A handled
        # cycle writes one PATCH, the status (see kubemint.controller.bookkeeping).
        progress = UnmarkedProgressStorage(prefix=KOPF_PREFIX)
        settings.persistence.progress_storage = progress
        settings.persistence.diffbase_storage = StatusDigestDiffBase(
            progress,
            legacy=kopf.AnnotationsDiffBaseStorage(
                prefix=KOPF_PREFIX, key="last-handled-configuration"
            ),
        )
        # kubemint's own Events (kopf.info/warn) are posted; kopf's log lines are not
        # (posting.loggers stays off), so no handler chatter reaches `kubectl get events`.
        settings.posting.level = logging.INFO
        settings.posting.loggers = False
        settings.posting.reporting_component = "kubemint-operator"
        # No batching.worker_limit: kopf handles no object until every object has been
        # indexed, and objects beyond the limit get no worker to index them, so a start with
        # more objects than workers handled nothing, ever. Reconciles are bounded by
        # Runtime.slots instead.
        settings.batching.idle_timeout = 0.2
        # Lists (on a start, a re-won lease, a relist after 410 Gone) come in pages: unpaged,
        # 11,500 objects arrived as one ~50 MB response, held as bytes, text and parsed
        # bodies at once, which set the operator's peak RSS on every re-won lease.
        settings.watching.chunk_size = LIST_PAGE
        settings.watching.server_timeout = 270
        settings.watching.client_timeout = 300

    return registry
