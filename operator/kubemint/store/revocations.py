"""Revoked token ids, shared by every replica through the Kubernetes API.

Each revocation is one key (`jti` → `exp`) in a ConfigMap of the token server's namespace,
bucketed by the hour its token expires: `kubemint-revoked-<hour>`. Every replica watches
these ConfigMaps (the snapshot's `revoked`), so a revoked token fails introspection on all of
them. The store stays bounded: token lifetimes are capped at 24 h, so at most ~25 buckets
exist, and a bucket is deleted as a whole once its hour (plus leeway) has passed — entries
expire with their tokens. A ConfigMap (not a Secret) because a `jti` is not a credential;
each holds up to 1 MiB (~20,000 revocations an hour).
"""

from __future__ import annotations

import logging
import threading
import time

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubemint.api.meta import LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY

log = logging.getLogger("kubemint.revocations")
ROLE_REVOCATIONS = "revocations"
PREFIX = "kubemint-revoked-"
BUCKET = 3600
LEEWAY = 300
SELECTOR = f"{LABEL_ROLE}={ROLE_REVOCATIONS}"


def bucket_name(exp: int) -> str:
    return f"{PREFIX}{exp // BUCKET}"


def expired_buckets(names: list[str], now: float) -> list[str]:
    """Buckets whose every token has expired (with leeway)."""
    out = []
    for name in names:
        hour = name.removeprefix(PREFIX)
        if hour.isdigit() and (int(hour) + 1) * BUCKET + LEEWAY < now:
            out.append(name)
    return out


class RevocationUnavailable(Exception):
    """The revocation could not be recorded (API server away or refusing); retry later."""


class RevocationStore:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def revoke(self, jti: str, exp: int) -> None:
        """Record a revocation (idempotent); RevocationUnavailable when it cannot be."""
        try:
            self._revoke(jti, exp)
        except (ApiException, OSError, urllib3.exceptions.HTTPError) as exc:
            raise RevocationUnavailable(type(exc).__name__) from None

    def _revoke(self, jti: str, exp: int) -> None:
        name = bucket_name(exp)
        patch = {"data": {jti: str(exp)}}
        try:
            self.core.patch_namespaced_config_map(name, self.namespace, patch)
            return
        except ApiException as exc:
            if exc.status != 404:
                raise
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=self.namespace,
                labels={LABEL_ROLE: ROLE_REVOCATIONS, LABEL_MANAGED_BY: MANAGED_BY},
            ),
            data={jti: str(exp)},
        )
        try:
            self.core.create_namespaced_config_map(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:  # another replica created it first
                raise
            self.core.patch_namespaced_config_map(name, self.namespace, patch)

    def sweep(self, now: float) -> None:
        listing = self.core.list_namespaced_config_map(self.namespace, label_selector=SELECTOR)
        names = [cm.metadata.name for cm in listing.items if cm.metadata and cm.metadata.name]
        for name in expired_buckets(names, now):
            try:
                self.core.delete_namespaced_config_map(name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def run_sweeper(self, halt: threading.Event, every: float = 300.0) -> None:
        while not halt.wait(every):
            try:
                self.sweep(time.time())
            except Exception as exc:  # the API may be away; try again next round
                log.warning("sweeping revocations failed: %s", type(exc).__name__)
