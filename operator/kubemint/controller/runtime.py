"""What every handler shares: settings, the Kubernetes I/O, per-object locks, status writing."""

from __future__ import annotations

import asyncio
import datetime
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import kopf

from kubemint.api.meta import (
    GROUP,
    VERSION,
    Outcome,
    format_time,
    ready_condition,
)
from kubemint.api.records import (
    Owner,
    Ownership,
    is_legacy_record_of,
    legacy_record_name,
    ownership,
    record_name,
)
from kubemint.config import OperatorSettings
from kubemint.controller.kube import UNREAD, AlreadyExists, Body, Kube, Unread
from kubemint.controller.observe import Observer

R = TypeVar("R")


RECONCILE_SLOTS = 64
"""Reconciles running at once. Bounded here, not with kopf's `batching.worker_limit`: kopf
waits until every object is indexed before it handles any, and an object past the worker
limit gets no worker to index it, so with more objects than workers (a restart, a re-won
lease) nothing was ever handled. Waiting here costs a suspended coroutine, not a connection."""


@dataclass
class Runtime:
    settings: OperatorSettings
    kube: Kube
    locks: dict[tuple[str, str, str], asyncio.Lock] = field(default_factory=dict)
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(RECONCILE_SLOTS))
    observer: Observer = field(default_factory=Observer)
    _key_pool: ThreadPoolExecutor | None = None

    async def off_loop(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Run key generation and key reading in the small key pool, not on kopf's event
        loop: an RSA-4096 key takes seconds of CPU, during which the loop would handle no
        other object. Threads suffice because cryptography releases the GIL meanwhile."""
        if self._key_pool is None:
            self._key_pool = ThreadPoolExecutor(
                max_workers=self.settings.key_workers, thread_name_prefix="kubemint-keys"
            )
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._key_pool, call)

    def close(self) -> None:
        self.kube.close()
        if self._key_pool is not None:
            self._key_pool.shutdown(wait=False, cancel_futures=True)

    def lock(self, kind: str, namespace: str, name: str) -> asyncio.Lock:
        """Serialise reconciles of one object (timer, change handler and drift repair)."""
        return self.locks.setdefault((kind, namespace, name), asyncio.Lock())

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self.locks.pop((kind, namespace, name), None)
        self.observer.forget(kind, namespace, name)


async def delete_record(
    runtime: Runtime, owner: Owner, live: Body | Unread | None = UNREAD
) -> None:
    """Remove the owner's verification record, and nothing that is not exactly that."""
    name = record_name(owner.kind, owner.uid)
    if isinstance(live, Unread):
        live = await runtime.kube.read_secret(runtime.settings.namespace, name)
    if live is not None and ownership(live, owner, record=True) is Ownership.OURS:
        meta = live["metadata"]
        await runtime.kube.delete_secret(meta["namespace"], meta["name"], uid=meta["uid"])


async def remove_legacy_record(runtime: Runtime, owner: Owner) -> None:
    """After an upgrade: the record under the old, collision-prone name goes, if it is this
    object's (its uid says so); a namesake's is left alone."""
    namespace = runtime.settings.namespace
    name = legacy_record_name(owner.kind, owner.namespace, owner.name)
    live = await runtime.kube.read_secret(namespace, name)
    if live is not None and is_legacy_record_of(live, owner):
        await runtime.kube.delete_secret(namespace, name, uid=live["metadata"]["uid"])


def post_events(body: Mapping[str, Any], events: Iterable[tuple[str, str]]) -> None:
    """Kubernetes Events for what a reconcile did (reasons and kids, never a secret)."""
    for reason, message in events:
        kopf.info(cast(kopf.Body, body), reason=reason, message=message)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def status_update(
    body: Mapping[str, Any],
    outcome: Outcome,
    moment: datetime.datetime,
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """The status to write: kind-specific fields, Ready, observedGeneration."""
    meta = body["metadata"]
    status = body.get("status") or {}
    return {
        **fields,
        "observedGeneration": meta.get("generation"),
        "conditions": ready_condition(
            outcome, meta.get("generation"), status.get("conditions"), moment
        ),
    }


INVALID_SPEC = "InvalidSpec"
"""Ready=False reason: a spec value Python cannot use, e.g. a duration beyond its bound in an
object stored before admission refused such values. The message names the field."""


def invalid_spec(body: Mapping[str, Any], parse: Callable[[Any], object]) -> dict[str, Any] | None:
    """The status to write when `parse` (a kind's `from_body`) refuses the spec; None when
    it reads. Such an object is reported and otherwise left alone: it must cost only itself,
    never a handler retrying forever in silence."""
    try:
        parse(body)
    except (ValueError, ArithmeticError) as exc:
        outcome = Outcome(False, INVALID_SPEC, str(exc)[:300] or type(exc).__name__)
        return status_update(body, outcome, now(), {})
    return None


def first_create(handler_kwargs: Mapping[str, Any]) -> bool:
    """The first attempt of a create handler: the object is new to kubemint (kopf has no
    record of handling it), so nothing kubemint writes for it can exist yet."""
    return handler_kwargs.get("reason") == kopf.Reason.CREATE and handler_kwargs.get("retry") == 0


def needs_recheck(status: Mapping[str, Any], *pending_fields: str) -> bool:
    """Timer filter: handled but not Ready, or a scheduled change is pending.

    An object never handled (no Ready condition yet) has no timer: its create or resume
    handler is about to run (and kopf retries it on errors), and most new objects come out
    Ready. A timer that matches makes kopf add its finalizer, and remove it again once the
    timer stops matching (a kind without a delete handler): two PATCHes and two watch events
    of every new AccessRule, and a timer task spawned and stopped for every new object."""
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None:
        return False
    return ready.get("status") != "True" or any(status.get(f) for f in pending_fields)


def iso(moment: datetime.datetime | None) -> str | None:
    return format_time(moment) if moment else None


def changed(body: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """Only the status fields that differ from the live object: an unchanged reconcile writes
    nothing, so timers and resyncs on thousands of objects cause no watch-event churn."""
    live = body.get("status") or {}
    return {k: v for k, v in status.items() if live.get(k) != v}


BACKOFF = 5.0  # seconds before a failed handler is retried (kopf's default is 60)
F = TypeVar("F", bound=Callable[..., Any])


def reconciler(
    registry: kopf.OperatorRegistry,
    plural: str,
    *,
    id: str,
    interval: float,
    slots: asyncio.Semaphore,
    when: Callable[..., bool] | None = None,
    observer: Observer | None = None,
) -> Callable[[F], F]:
    """Run one reconcile function on resume, create, update, and periodically while `when`
    holds (kopf re-evaluates `when` on every watch event of the object); at most as many at
    once as `slots` allows (shared by all kinds). `observer` sees each outcome (metrics,
    Warning events)."""

    def decorate(fn: F) -> F:
        observed = fn if observer is None else observer.wrap(fn)

        @functools.wraps(fn)
        async def limited(**kwargs: Any) -> Any:
            async with slots:
                return await observed(**kwargs)

        for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
            on(GROUP, VERSION, plural, id=id, backoff=BACKOFF, registry=registry)(limited)
        timer = kopf.timer(
            GROUP,
            VERSION,
            plural,
            id=f"{id}_timer",
            interval=interval,
            # A new object is not Ready yet, so the filter matches at once: without a delay
            # every object would be reconciled twice on creation.
            initial_delay=interval,
            when=when,
            backoff=BACKOFF,
            registry=registry,
        )
        timer(limited)
        return fn  # registered through `limited`; the function itself stays as it was

    return decorate


async def create_or_converge(converge: Callable[..., Awaitable[R]], fresh: bool) -> R:
    """`converge(known_absent=…)` for a just-created object's first attempt (`fresh`): its
    Secrets are created without being read first. A Secret already there (a namesake's, or a
    retried first attempt's) raises AlreadyExists: then decide from what is there, as for any
    other reconcile."""
    try:
        return await converge(known_absent=fresh)
    except AlreadyExists:
        if not fresh:
            raise
        return await converge(known_absent=False)
