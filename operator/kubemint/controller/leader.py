"""Leader election over a `coordination.k8s.io/v1` Lease, with client-go leaderelection semantics.

kopf's own peering freezes every replica of equal priority, so kubemint elects its one active
replica itself. The leader holds a Lease and renews it; standbys poll it and take it over once
it has been released or has expired. Every write is a `replace` carrying the resourceVersion
that was read, so when two replicas race for the same Lease only one write lands: the other gets
409 Conflict, re-reads and sees the winner.

`decide` is the pure rule, `LeaderElector` does the I/O (the official, synchronous `kubernetes`
client, run in worker threads), and `run_as_leader` ties a unit of work to holding the Lease.

Renewals run on a thread of their own, never on the event loop: the operator's loop can be
busy for longer than a lease lasts (a start or a re-won lease hands kopf every object at once),
and a renewal queued behind that work missed its deadline, so the operator stepped down,
re-listed everything and saturated its loop again. The renewing thread needs nothing from the
loop; it hands its outcome over with `call_soon_threadsafe` and is told to stop through a
`threading.Event`. Give the elector an API client of its own, so that its requests never wait
for a connection behind the operator's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NoReturn

import urllib3.exceptions
from kubernetes import client as k8s

__all__ = [
    "Action",
    "Decision",
    "LeaderElector",
    "LeadershipLost",
    "LeaseSettings",
    "LeaseState",
    "decide",
    "run_as_leader",
]

_log = logging.getLogger("kubemint.leader")

# What a failed API call may raise that is worth retrying: API errors (5xx, 429, and also 403
# while RBAC is still being applied), connection errors and timeouts (OSError covers both the
# socket errors and TimeoutError).
_TRANSIENT: tuple[type[BaseException], ...] = (
    k8s.ApiException,
    urllib3.exceptions.HTTPError,
    OSError,
)


class LeadershipLost(Exception):
    """This replica does not hold the lease (any more) and must stop acting as the leader."""


@dataclass(frozen=True)
class LeaseSettings:
    """Which Lease to contend for, as whom, and how often."""

    name: str
    """Name of the Lease object; every replica of one operator uses the same one."""
    namespace: str
    """Namespace of the Lease (normally the operator's own)."""
    identity: str
    """This replica's holderIdentity; unique per replica (e.g. the pod name)."""
    lease_duration: float = 15.0
    """Seconds a standby waits after the last renewal before taking the lease over, and seconds
    the leader keeps going without a successful renewal before it gives up."""
    renew_interval: float = 2.0
    """Seconds between the leader's renewals (client-go's retry period): five chances within
    the renew deadline, so that a renewal or two delayed or failed by a busy process or API
    server still leave time to retry before the lease expires."""
    retry_interval: float = 2.0
    """Seconds between a standby's attempts to acquire, and between retries of failed calls."""

    @property
    def renew_deadline(self) -> float:
        """Seconds without a successful renewal after which the leader stops acting: a third
        shorter than `lease_duration` (client-go's 10 s of 15 s), so the old leader has stopped
        before any standby, timing expiry from the lease, can take over despite clock skew."""
        return self.lease_duration * 2 / 3

    def __post_init__(self) -> None:
        if not 0 < self.renew_interval < self.renew_deadline:
            raise ValueError(
                "renew_interval must be positive and shorter than two thirds of lease_duration"
            )
        if self.retry_interval <= 0:
            raise ValueError("retry_interval must be positive")


class Action(StrEnum):
    """What a candidate should do with the Lease it has just read."""

    CREATE = "create"  # there is no Lease yet: create it, holding it
    ACQUIRE = "acquire"  # nobody holds it, or the holder's lease expired: take it over
    RENEW = "renew"  # we hold it: bump renewTime
    WAIT = "wait"  # another replica holds an unexpired lease


@dataclass(frozen=True)
class LeaseState:
    """The parts of a Lease that the election looks at."""

    holder: str | None
    renew_time: datetime | None  # timezone-aware
    lease_duration_seconds: int | None
    transitions: int
    resource_version: str | None


@dataclass(frozen=True)
class Decision:
    """The outcome of `decide`."""

    action: Action
    holder: str | None = None
    """WAIT: the replica holding the lease."""
    until: datetime | None = None
    """WAIT: when that lease expires unless its holder renews it first."""


def decide(
    lease: LeaseState | None, identity: str, now: datetime, lease_duration: float
) -> Decision:
    """What the candidate `identity` should do with `lease` at wall-clock time `now`.

    A lease expires when renewTime + its own leaseDurationSeconds lies before `now` (the holder
    chose that duration; ours is the fallback only when the Lease has none). A lease that still
    names us is renewed even if it has expired: nobody else took it over, so the resourceVersion
    check on the write settles any race. A holder without a renewTime is treated as expired.
    """
    if lease is None:
        return Decision(Action.CREATE)
    if lease.holder == identity:
        return Decision(Action.RENEW)
    if not lease.holder or lease.renew_time is None:  # client-go releases with holder ""
        return Decision(Action.ACQUIRE)
    seconds = (
        lease.lease_duration_seconds if lease.lease_duration_seconds is not None else lease_duration
    )
    expires = lease.renew_time + timedelta(seconds=seconds)
    if expires < now:
        return Decision(Action.ACQUIRE)
    return Decision(Action.WAIT, holder=lease.holder, until=expires)


class LeaderElector:
    """Contends for one Lease on behalf of this replica.

    `api` is a `kubernetes.client.CoordinationV1Api`. Call `acquire()`, then `keep()` while
    acting as the leader, and `release()` on the way out; `run_as_leader` does all three.
    """

    def __init__(self, api: Any, settings: LeaseSettings) -> None:
        self.api = api
        self.settings = settings
        self._held = False
        self._renewed_at = 0.0  # time.monotonic() when the last successful write was started
        self._last_problem: str | None = None  # to log a recurring failure only once
        self._last_holder: str | None = None  # to log "standing by" only when the holder changes
        # A hung request must not outlive the renewal it belongs to.
        self._request_timeout = max(1.0, settings.renew_deadline / 2)
        self._lease: Any = None  # the Lease as we last wrote it: a renewal writes it again
        self.renewals = 0
        """Successful renewals so far (a count for tests and benchmarks)."""

    @property
    def is_leader(self) -> bool:
        """Whether this replica believes it holds the lease (it may have expired meanwhile)."""
        return self._held

    @property
    def where(self) -> str:
        """The Lease as "namespace/name", for messages."""
        return f"{self.settings.namespace}/{self.settings.name}"

    # -- the three phases --------------------------------------------------------------------

    async def acquire(self) -> None:
        """Return once this replica holds the lease, creating the Lease if there is none."""
        while True:
            started = time.monotonic()
            try:
                acquired = await asyncio.to_thread(self._try_acquire)
            except _TRANSIENT as exc:
                self._problem("acquire", exc)
                acquired = False
            if acquired:
                self._held, self._renewed_at = True, started
                self._last_problem = self._last_holder = None
                _log.info("acquired lease %s as %s", self.where, self.settings.identity)
                return
            await asyncio.sleep(self.settings.retry_interval)

    async def keep(self) -> NoReturn:
        """Renew the lease every `renew_interval` for as long as this replica holds it.

        Raises `LeadershipLost` when another holder (or none, or no Lease) is observed, or when
        no renewal has succeeded for `renew_deadline` seconds: soon after, a standby may rightly
        take over, so carrying on would risk two leaders. The renewals run on a thread of their
        own (see the module docstring), so a busy event loop delays only the moment this
        coroutine hears the outcome, never a renewal. Cancelling it stops the thread and waits
        for it, so no renewal outlives it (a release must not race one).
        """
        if not self._held:
            raise LeadershipLost(f"{self.settings.identity} does not hold lease {self.where}")
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[LeadershipLost | None] = loop.create_future()
        stop = threading.Event()

        def renew() -> None:
            try:
                outcome: LeadershipLost | BaseException | None = self._renew_until(stop)
            except BaseException as exc:  # a bug: hand it to the loop rather than lose it
                outcome = exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, ended, outcome)

        threading.Thread(target=renew, name=f"lease {self.where}", daemon=True).start()
        try:
            lost = await asyncio.shield(ended)
        except asyncio.CancelledError:
            stop.set()
            await ended  # at most one attempt, bounded by its deadline
            raise
        assert lost is not None, "the renewals end by themselves only when the lease is lost"
        raise lost

    def _renew_until(self, stop: threading.Event) -> LeadershipLost | None:
        """The renewal loop, on its own thread: None once `stop` is set, else how the lease
        was lost. Each attempt must finish by the renew deadline."""
        settings = self.settings
        delay = settings.renew_interval
        while True:
            deadline = self._renewed_at + settings.renew_deadline
            asleep = time.monotonic()
            pause = max(0.0, min(delay, deadline - asleep))
            if stop.wait(pause):
                return None
            started = time.monotonic()
            late = started - asleep - pause
            if deadline - started <= 0:
                return self._lost(f"not renewed for {settings.renew_deadline:g}s")
            try:
                renewed = self._try_renew(deadline)
            except LeadershipLost as exc:
                return exc
            except _TRANSIENT as exc:  # includes TimeoutError from the deadline
                self._problem("renew", exc)
                renewed = False
            took = time.monotonic() - started
            if max(late, took) > settings.renew_interval:
                # Starved of CPU (or of the GIL), or a slow API server: say which.
                _log.warning(
                    "renewal of lease %s %s after %.1fs (woke %.1fs late)",
                    self.where,
                    "succeeded" if renewed else "failed",
                    took,
                    late,
                )
            if renewed:
                self._renewed_at, self._last_problem = started, None
                self.renewals += 1
                delay = settings.renew_interval
            else:
                delay = settings.retry_interval

    async def release(self) -> None:
        """Give the lease up at once, if held, so a standby need not wait for it to expire.

        Like client-go: clear the holder, set leaseDurationSeconds to 1 and renewTime to now.
        Never raises (failures are logged; the lease then simply expires), and gives up after
        `lease_duration` seconds, when the lease would have expired anyway.
        """
        if not self._held:
            return
        self._held = False  # whatever happens next, we no longer act as the leader
        try:
            async with asyncio.timeout(self.settings.lease_duration):
                while True:
                    try:
                        if await asyncio.to_thread(self._try_release):
                            return
                    except _TRANSIENT as exc:
                        self._problem("release", exc)
                    await asyncio.sleep(self.settings.retry_interval)
        except TimeoutError:
            _log.warning("could not release lease %s; it will expire on its own", self.where)
        except Exception:
            _log.exception("could not release lease %s; it will expire on its own", self.where)

    # -- single attempts ---------------------------------------------------------------------

    def _try_acquire(self) -> bool:
        lease = self._read()
        state = None if lease is None else _state(lease)
        now = datetime.now(UTC)
        decision = decide(state, self.settings.identity, now, self.settings.lease_duration)
        if decision.action is Action.CREATE:
            return self._create(now)
        if decision.action is Action.WAIT:
            if decision.holder != self._last_holder:
                self._last_holder = decision.holder
                _log.info(
                    "lease %s is held by %s; %s stands by",
                    self.where,
                    decision.holder,
                    self.settings.identity,
                )
            return False
        self._stamp(lease, now, take_over=decision.action is Action.ACQUIRE)
        return self._replace(lease)

    def _try_renew(self, deadline: float) -> bool:
        """One renewal, done by `deadline` (time.monotonic()) or TimeoutError. It writes the
        Lease as we last wrote it, one request where a read-then-write took two (on a busy
        API server each can take seconds); the resourceVersion it carries makes the write
        fail (409) if anyone changed the Lease since, and then it reads and looks again."""
        if self._lease is not None:
            self._stamp(self._lease, datetime.now(UTC), take_over=False)
            if self._replace(self._lease, deadline):
                return True
        lease = self._read(deadline)
        if lease is None:
            raise self._lost("the Lease was deleted")
        holder = _state(lease).holder
        if holder != self.settings.identity:
            raise self._lost(f"it is now held by {holder or 'nobody'}")
        self._stamp(lease, datetime.now(UTC), take_over=False)
        return self._replace(lease, deadline)  # on 409, try again from a fresh read

    def _try_release(self) -> bool:
        lease = self._read()
        if lease is None or _state(lease).holder != self.settings.identity:
            return True  # nothing of ours left to release
        now = _wire_time(datetime.now(UTC))
        spec = lease.spec
        # Omitted from the PUT body, holderIdentity is cleared on the server.
        spec.holder_identity = None
        spec.lease_duration_seconds = 1
        spec.acquire_time = spec.renew_time = now
        if self._replace(lease):
            _log.info("released lease %s as %s", self.where, self.settings.identity)
            return True
        return False

    def _stamp(self, lease: Any, now: datetime, *, take_over: bool) -> None:
        """Write us into `lease` as the holder, renewed `now`."""
        if lease.spec is None:
            lease.spec = k8s.V1LeaseSpec()
        spec = lease.spec
        if take_over:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.settings.identity
        spec.lease_duration_seconds = self._duration_seconds
        spec.renew_time = _wire_time(now)
        spec.acquire_time = _wire_time(spec.acquire_time or now)

    @property
    def _duration_seconds(self) -> int:
        # The API wants whole seconds; rounding up errs on the side of standbys waiting longer.
        return max(1, math.ceil(self.settings.lease_duration))

    # -- API calls ---------------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], *args: Any, deadline: float | None) -> Any:
        """`method(*args)`, given the time left until `deadline` (time.monotonic()) as its
        total timeout, or `_request_timeout` without one. Blocking: call it off the loop."""
        timeout = self._request_timeout
        if deadline is not None:
            # All the time there is: a slow answer that comes before the deadline still
            # renews, where a shorter timeout would give up on it and lose the lease.
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise TimeoutError(f"no time left for a request on lease {self.where}")
        return method(*args, _request_timeout=timeout)

    def _read(self, deadline: float | None = None) -> Any:
        """The Lease, or None if there is none."""
        try:
            return self._call(
                self.api.read_namespaced_lease,
                self.settings.name,
                self.settings.namespace,
                deadline=deadline,
            )
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _create(self, now: datetime) -> bool:
        stamp = _wire_time(now)
        body = k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name=self.settings.name, namespace=self.settings.namespace),
            spec=k8s.V1LeaseSpec(
                holder_identity=self.settings.identity,
                lease_duration_seconds=self._duration_seconds,
                acquire_time=stamp,
                renew_time=stamp,
                lease_transitions=0,
            ),
        )
        try:
            self._lease = self._call(
                self.api.create_namespaced_lease, self.settings.namespace, body, deadline=None
            )
        except k8s.ApiException as exc:
            if exc.status == 409:  # another replica created it first
                return False
            raise
        return True

    def _replace(self, lease: Any, deadline: float | None = None) -> bool:
        """Write `lease` back; False if it changed since it was read (409) or is gone (404)."""
        # `lease` still carries the resourceVersion we read: this is the optimistic lock.
        self._lease = None  # unless this write lands, what we last wrote is stale
        try:
            written = self._call(
                self.api.replace_namespaced_lease,
                self.settings.name,
                self.settings.namespace,
                lease,
                deadline=deadline,
            )
        except k8s.ApiException as exc:
            if exc.status in (404, 409):
                _log.debug("lease %s changed under us (HTTP %s)", self.where, exc.status)
                return False
            raise
        self._lease = written
        return True

    # -- logging -----------------------------------------------------------------------------

    def _lost(self, reason: str) -> LeadershipLost:
        """Stop holding the lease; the error that says why."""
        self._held = False
        _log.warning("lost lease %s as %s: %s", self.where, self.settings.identity, reason)
        return LeadershipLost(f"lost lease {self.where}: {reason}")

    def _problem(self, what: str, exc: BaseException) -> None:
        """Log a failed call once per kind of failure, not once per retry."""
        if isinstance(exc, k8s.ApiException):
            kind = f"HTTP {exc.status} {exc.reason}"
        else:
            kind = type(exc).__name__
        if kind == self._last_problem:
            _log.debug("%s of lease %s failed again: %s", what, self.where, kind)
            return
        self._last_problem = kind
        _log.warning("%s of lease %s failed (%s); retrying: %s", what, self.where, kind, exc)


async def run_as_leader(
    elector: LeaderElector,
    work: Callable[[asyncio.Event], Awaitable[None]],
    *,
    stop_timeout: float = 30.0,
) -> None:
    """Acquire the lease, then run `work(stop)` while keeping it; release it on the way out.

    `work` should return soon after `stop` is set. If leadership is lost, `stop` is set, `work`
    gets `stop_timeout` seconds to finish (then it is cancelled), and `LeadershipLost` is raised.
    If `work` returns (or raises) first, the renewals stop and its outcome is passed on. The
    lease is released on every exit, including cancellation and KeyboardInterrupt.
    """
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    try:
        await elector.acquire()
        keeper = asyncio.create_task(elector.keep(), name=f"keep lease {elector.where}")
        worker = asyncio.create_task(_run(work, stop), name="leader work")
        tasks += [keeper, worker]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if worker.done():
            await _cancel(keeper)
            worker.result()  # re-raise what the work raised
            return
        stop.set()
        await asyncio.wait([worker], timeout=stop_timeout)
        if not worker.done():
            _log.warning("leader work did not stop within %gs; cancelling it", stop_timeout)
        await _cancel(worker)
        if not worker.cancelled() and worker.exception() is not None:
            _log.error("leader work failed while stopping", exc_info=worker.exception())
        keeper.result()  # raises LeadershipLost (or whatever broke the renewals)
        raise LeadershipLost(f"lost lease {elector.where}")  # keep() never returns normally
    finally:
        for task in tasks:
            await _cancel(task)
        await elector.release()


async def _run(work: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event) -> None:
    await work(stop)


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel `task` if still running and wait for it to end, without raising its outcome."""
    if not task.done():
        task.cancel()
        await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # mark it retrieved: the caller reports what matters


def _settle(
    future: asyncio.Future[LeadershipLost | None], outcome: LeadershipLost | BaseException | None
) -> None:
    """Resolve `future` on its loop with how the renewals ended."""
    if future.done():
        return
    if isinstance(outcome, BaseException) and not isinstance(outcome, LeadershipLost):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _state(lease: Any) -> LeaseState:
    spec = lease.spec or k8s.V1LeaseSpec()
    return LeaseState(
        holder=spec.holder_identity,
        renew_time=spec.renew_time,
        lease_duration_seconds=spec.lease_duration_seconds,
        transitions=spec.lease_transitions or 0,
        resource_version=lease.metadata.resource_version if lease.metadata else None,
    )


def _wire_time(moment: datetime) -> datetime:
    """`moment` in UTC, nudged to a non-zero microsecond.

    The client serialises datetimes with isoformat(), which drops the fraction when it is zero,
    while the API server parses MicroTime (renewTime, acquireTime) only with exactly six
    fractional digits and rejects the write otherwise. One microsecond later is harmless.
    """
    moment = moment.astimezone(UTC)
    return moment if moment.microsecond else moment.replace(microsecond=1)
