"""TrustedIssuer → status only: Ready in the token server's namespace, WrongNamespace elsewhere.

No timer: the outcome depends on the object alone, so reconciling on resume, create and
update is enough (and no finalizer is needed: nothing is written outside the object).
"""

from __future__ import annotations

from typing import Any

import kopf

from kubemint.api import trustedissuer
from kubemint.api.meta import GROUP, VERSION
from kubemint.controller.runtime import BACKOFF, Runtime, changed, now, status_update
from kubemint.reconcile.trustedissuers import IssuerContext, check_trusted_issuer


def reconcile(body: kopf.Body | dict[str, Any], server_namespace: str) -> dict[str, Any]:
    spec = trustedissuer.TrustedIssuerSpec.from_body(body)
    outcome = check_trusted_issuer(spec, IssuerContext(server_namespace))
    return status_update(body, outcome, now(), {})


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    namespace = runtime.settings.namespace

    async def trusted_issuer(*, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status.update(changed(body, reconcile(body, namespace)))

    for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
        on(
            GROUP,
            VERSION,
            trustedissuer.PLURAL,
            id="trusted_issuer",
            backoff=BACKOFF,
            registry=registry,
        )(runtime.observer.wrap(trusted_issuer))
