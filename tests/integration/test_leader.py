"""Leader election against a real kube-apiserver: two replicas contending for one Lease.

Short timings (3 s leases, 1 s renewals, 0.5 s retries) keep the whole file to a few seconds
per test while exercising the real optimistic-concurrency and expiry behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes import client, config

from kubemint.controller.leader import LeaderElector, LeadershipLost, LeaseSettings, run_as_leader
from kubemint.devcluster import ControlPlane

LEASE = "kubemint-leader"
DURATION, RENEW, RETRY = 3.0, 1.0, 0.5

MakeElector = Callable[[str], LeaderElector]


@pytest.fixture
async def make_elector(cluster: ControlPlane, namespace: str) -> AsyncIterator[MakeElector]:
    """Electors for the same Lease, each with its own API client (as separate replicas have)."""
    api_clients: list[Any] = []

    def make(identity: str) -> LeaderElector:
        kubeconfig = str(cluster.kubeconfig)
        api_client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        api_clients.append(api_client)
        settings = LeaseSettings(
            name=LEASE,
            namespace=namespace,
            identity=identity,
            lease_duration=DURATION,
            renew_interval=RENEW,
            retry_interval=RETRY,
        )
        return LeaderElector(client.CoordinationV1Api(api_client), settings)

    yield make
    for api_client in api_clients:
        api_client.close()


async def holder(elector: LeaderElector) -> tuple[str | None, int | None]:
    lease = await asyncio.to_thread(
        elector.api.read_namespaced_lease, LEASE, elector.settings.namespace
    )
    return lease.spec.holder_identity, lease.spec.lease_transitions


async def finish(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
            await task


async def test_of_two_candidates_exactly_one_holds_the_lease(make_elector: MakeElector) -> None:
    a, b = make_elector("replica-a"), make_elector("replica-b")
    tasks = {asyncio.create_task(a.acquire()): a, asyncio.create_task(b.acquire()): b}

    done, pending = await asyncio.wait(tasks, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    await asyncio.sleep(2)  # several retries of the loser: it must still be waiting
    assert all(not task.done() for task in pending)

    winner, loser = tasks[done.pop()], tasks[pending.pop()]
    assert winner.is_leader
    assert not loser.is_leader
    assert await holder(winner) == (winner.settings.identity, 0)
    await finish(*tasks)
    await winner.release()


async def test_a_released_lease_is_taken_over_at_once(make_elector: MakeElector) -> None:
    a, b = make_elector("replica-a"), make_elector("replica-b")
    await asyncio.wait_for(a.acquire(), 5)
    waiting = asyncio.create_task(b.acquire())
    await asyncio.sleep(1)
    assert not waiting.done()

    await a.release()
    released = time.monotonic()
    await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - released < 2
    assert await holder(b) == ("replica-b", 1)
    assert not a.is_leader
    await b.release()


async def test_a_lease_that_is_no_longer_renewed_is_taken_over_after_it_expires(
    make_elector: MakeElector,
) -> None:
    a, b = make_elector("replica-a"), make_elector("replica-b")
    await asyncio.wait_for(a.acquire(), 5)
    keeping = asyncio.create_task(a.keep())
    waiting = asyncio.create_task(b.acquire())
    await asyncio.sleep(DURATION + 1)  # longer than a lease: only renewals keep b out
    assert not waiting.done()

    await finish(keeping)  # a hangs without releasing (as a frozen or partitioned pod would)
    stopped = time.monotonic()
    await asyncio.wait_for(waiting, DURATION + 3)
    elapsed = time.monotonic() - stopped
    # The last renewal was at most RENEW before `stopped`; b polls every RETRY.
    assert DURATION - RENEW - 0.5 <= elapsed <= DURATION + RETRY + 1
    assert await holder(b) == ("replica-b", 1)

    # a still believes it leads, but has not renewed for longer than a lease: it gives up at once
    # (and its release leaves b's lease alone).
    assert a.is_leader
    with pytest.raises(LeadershipLost, match="not renewed"):
        await asyncio.wait_for(a.keep(), 0.5)
    assert not a.is_leader
    await a.release()
    assert await holder(b) == ("replica-b", 1)
    await b.release()


async def test_run_as_leader_runs_one_candidates_work_at_a_time(make_elector: MakeElector) -> None:
    runs: list[tuple[str, float, float]] = []

    def work_of(identity: str) -> Callable[[asyncio.Event], Any]:
        async def work(stop: asyncio.Event) -> None:
            begin = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.5)
            runs.append((identity, begin, time.monotonic()))

        return work

    candidates = [make_elector(f"replica-{n}") for n in "ab"]
    await asyncio.wait_for(
        asyncio.gather(*(run_as_leader(c, work_of(c.settings.identity)) for c in candidates)),
        10,
    )

    assert sorted(identity for identity, _, _ in runs) == ["replica-a", "replica-b"]
    (_, _, first_end), (_, second_begin, _) = sorted(runs, key=lambda run: run[1])
    assert first_end <= second_begin
    assert second_begin - first_end < 2  # handed over by release, not by expiry
    assert not any(c.is_leader for c in candidates)


async def test_run_as_leader_stops_the_work_when_the_lease_is_taken_away(
    make_elector: MakeElector, cluster: ControlPlane, namespace: str
) -> None:
    elector = make_elector("replica-a")
    stopped: list[float] = []
    running = asyncio.Event()

    async def work(stop: asyncio.Event) -> None:
        running.set()
        await stop.wait()
        stopped.append(time.monotonic())

    leader = asyncio.create_task(run_as_leader(elector, work))
    await asyncio.wait_for(running.wait(), 5)
    patch = '{"spec": {"holderIdentity": "intruder"}}'
    await asyncio.to_thread(
        cluster.kubectl, "patch", "lease", LEASE, "-n", namespace, "--type=merge", "-p", patch
    )
    taken = time.monotonic()

    with pytest.raises(LeadershipLost, match="held by intruder"):
        await asyncio.wait_for(leader, RENEW + 3)
    assert len(stopped) == 1
    assert stopped[0] - taken < RENEW + 1  # noticed at the next renewal
    assert await holder(elector) == ("intruder", 0)  # release left the intruder's lease alone


async def test_a_leader_whose_event_loop_stalls_for_longer_than_a_lease_keeps_it(
    make_elector: MakeElector,
) -> None:
    """A start (or a re-won lease) hands kopf every object at once, and its event loop may not
    yield for longer than a lease lasts. Renewals waiting on that loop missed their deadline: a
    standby took the lease over while the stalled leader still ran its work, and the leader then
    stepped down, re-listed everything and stalled again. Renewals now have a thread of their
    own, so the stall costs the lease nothing."""
    stall = 2 * DURATION
    leader, standby = make_elector("replica-a"), make_elector("replica-b")
    renewals_in_stall: list[int] = []
    contending: list[asyncio.Future[float]] = []

    async def work(stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        contending.append(loop.run_in_executor(None, asyncio.run, contend()))
        await asyncio.sleep(0.2)  # renewals started, the standby waiting
        before = leader.renewals
        time.sleep(stall)  # noqa: ASYNC251 — the point: the loop runs nothing meanwhile
        renewals_in_stall.append(leader.renewals - before)
        await asyncio.sleep(2 * RENEW)  # the loop is back: the renewals must still be fine

    async def contend() -> float:
        """The standby, on a loop of its own (as another replica): when it got the lease."""
        await asyncio.wait_for(standby.acquire(), stall + 10)
        won = time.monotonic()
        await standby.release()
        return won

    await asyncio.wait_for(run_as_leader(leader, work), stall + 10)  # no LeadershipLost
    stepped_down = time.monotonic()

    # The standby got the lease from the release at the end, not during the stall.
    assert await contending[0] >= stepped_down - 0.5, "a second leader took over in the stall"
    assert renewals_in_stall
    assert renewals_in_stall[0] >= stall / RENEW - 2  # renewed on time throughout the stall
    assert not leader.is_leader
