"""What every reconcile's outcome tells the outside: the operator's metrics, and a Warning
Event on the object when it is not Ready (its condition's reason and message) or its
reconcile raised. One Event per change of what is wrong, repeated at most hourly while it
stays wrong: an object failing every retry (5 s) must not post an Event each time."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException

from kubemint.api.meta import GROUP, VERSION
from kubemint.controller.metrics import OperatorMetrics, ready_condition

RECONCILE_FAILED = "ReconcileFailed"
REPEAT_AFTER = 3600.0
"""Seconds after which an unchanged problem is posted again (Events expire after an hour)."""

Key = tuple[str, str, str]


@dataclass
class WarningGate:
    """Which Warnings to post: a problem once when it starts or changes, again only after
    REPEAT_AFTER; a Ready object's record is dropped, so its next problem is posted."""

    repeat_after: float = REPEAT_AFTER
    posted: dict[Key, tuple[tuple[str, str], float]] = field(default_factory=dict)

    def should_post(self, key: Key, problem: tuple[str, str], now: float) -> bool:
        last = self.posted.get(key)
        if last is not None and last[0] == problem and now - last[1] < self.repeat_after:
            return False
        self.posted[key] = (problem, now)
        return True

    def resolved(self, key: Key) -> None:
        self.posted.pop(key, None)


def failure_message(exc: BaseException) -> str:
    """What a failed reconcile's Event says: the exception's type and, for the kinds whose
    text kubemint or the API server writes without request data, their text; never the
    arbitrary text of other exceptions (it could quote a Secret's contents)."""
    if isinstance(exc, kopf.TemporaryError | kopf.PermanentError):
        detail = str(exc)
    elif isinstance(exc, ApiException):
        detail = f"the API server answered {exc.status} {exc.reason}"
    else:
        detail = type(exc).__name__
    return f"reconcile failed ({detail[:200]}); retried after a backoff, see the operator log"


def namespace_going(exc: BaseException) -> bool:
    """The API server refused because the object's namespace is being deleted, or is gone."""
    if not isinstance(exc, ApiException):
        return False
    return exc.status == 404 or "NamespaceTerminating" in str(exc.body or "")


def outcome_status(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The object's status after this reconcile: the live one with the handler's patch."""
    body = kwargs.get("body") or {}
    patch = kwargs.get("patch") or {}
    return {**(body.get("status") or {}), **(patch.get("status") or {})}


class Observer:
    def __init__(self, metrics: OperatorMetrics | None = None) -> None:
        self.metrics = metrics or OperatorMetrics()
        self.gate = WarningGate()

    def wrap(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """`fn` (a kopf handler taking body= and patch=), observed."""

        @functools.wraps(fn)
        async def observed(**kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = await fn(**kwargs)
            except Exception as exc:
                self.failed(kwargs["body"], exc, time.perf_counter() - started)
                raise
            self.reconciled(kwargs["body"], outcome_status(kwargs), time.perf_counter() - started)
            return result

        return observed

    def reconciled(
        self, body: Mapping[str, Any], status: Mapping[str, Any], seconds: float
    ) -> None:
        kind, namespace, name = key = _key(body)
        self.metrics.reconciled(kind, namespace, name, status, seconds)
        ready = ready_condition(status)
        if ready is None or ready.get("status") == "True":
            self.gate.resolved(key)
            return
        reason = str(ready.get("reason") or "NotReady")
        message = str(ready.get("message") or "")
        if self.gate.should_post(key, (reason, message), time.monotonic()):
            kopf.warn(cast(kopf.Body, body), reason=reason, message=message or "not Ready")

    def failed(self, body: Mapping[str, Any], exc: BaseException, seconds: float) -> None:
        key = _key(body)
        self.metrics.failed(key[0], seconds)
        if namespace_going(exc):
            return  # no Event can be posted there any more (kopf would retry it 9 times)
        message = failure_message(exc)
        if self.gate.should_post(key, (RECONCILE_FAILED, message), time.monotonic()):
            kopf.warn(cast(kopf.Body, body), reason=RECONCILE_FAILED, message=message)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self.metrics.forget(kind, namespace, name)
        self.gate.resolved((kind, namespace, name))

    def clear(self) -> None:
        """Leadership lost: the next leader reports the objects (and posts their Events)."""
        self.metrics.objects.objects.clear()
        self.gate.posted.clear()


def _key(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (
        str(body.get("kind") or ""),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


OBSERVED = ("signingkeys", "oauth2clients", "serviceaccounts", "accessrules", "trustedissuers")


def register(registry: kopf.OperatorRegistry, observer: Observer) -> None:
    """Drop a deleted object's series (not every kind has a delete handler to do it)."""

    def deleted(*, type: str, **_: Any) -> bool:
        return type == "DELETED"

    async def gone(*, body: kopf.Body, **_: Any) -> None:
        observer.forget(*_key(body))

    for plural in OBSERVED:
        kopf.on.event(
            GROUP, VERSION, plural, id="observe_deleted", when=deleted, registry=registry
        )(gone)
