"""Leader election: the pure `decide` rule, settings checks, and `run_as_leader`'s choreography.

The Lease I/O itself is exercised against a real API server in tests/integration/test_leader.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import pytest

from kubemint.controller.leader import (
    Action,
    Decision,
    LeaderElector,
    LeadershipLost,
    LeaseSettings,
    LeaseState,
    decide,
    run_as_leader,
)

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
US = "kubemint-0"
THEM = "kubemint-1"
OUR_DURATION = 15.0


def lease(
    holder: str | None,
    renewed_ago: float | None,
    duration: int | None = 15,
    transitions: int = 3,
) -> LeaseState:
    renew_time = None if renewed_ago is None else NOW - timedelta(seconds=renewed_ago)
    return LeaseState(
        holder=holder,
        renew_time=renew_time,
        lease_duration_seconds=duration,
        transitions=transitions,
        resource_version="42",
    )


def wait_for(holder: str, seconds_from_now: float) -> Decision:
    return Decision(Action.WAIT, holder=holder, until=NOW + timedelta(seconds=seconds_from_now))


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(None, Decision(Action.CREATE), id="a missing lease is created"),
        pytest.param(
            lease(None, 60), Decision(Action.ACQUIRE), id="a lease without a holder is acquired"
        ),
        pytest.param(
            lease("", 0, duration=1),
            Decision(Action.ACQUIRE),
            id="a lease released client-go style (empty holder, 1 s duration) is acquired at once",
        ),
        pytest.param(
            lease(THEM, 20),
            Decision(Action.ACQUIRE),
            id="an expired lease held by another replica is acquired",
        ),
        pytest.param(
            lease(THEM, 5),
            wait_for(THEM, 10),
            id="an unexpired lease held by another replica is waited for until it expires",
        ),
        pytest.param(
            lease(THEM, 15),
            wait_for(THEM, 0),
            id="a lease renewed exactly its duration ago has not expired yet",
        ),
        pytest.param(
            lease(THEM, 15.001),
            Decision(Action.ACQUIRE),
            id="a lease renewed just over its duration ago has expired",
        ),
        pytest.param(
            lease(THEM, 20, duration=30),
            wait_for(THEM, 10),
            id="expiry uses the lease's own longer duration, not ours",
        ),
        pytest.param(
            lease(THEM, 10, duration=5),
            Decision(Action.ACQUIRE),
            id="expiry uses the lease's own shorter duration, not ours",
        ),
        pytest.param(
            lease(THEM, 10, duration=None),
            wait_for(THEM, 5),
            id="a lease without a duration falls back to ours and is waited for",
        ),
        pytest.param(
            lease(THEM, 20, duration=None),
            Decision(Action.ACQUIRE),
            id="a lease without a duration falls back to ours and expires by it",
        ),
        pytest.param(
            lease(THEM, None),
            Decision(Action.ACQUIRE),
            id="a lease held by another replica but never renewed is acquired",
        ),
        pytest.param(
            lease(THEM, -5),
            wait_for(THEM, 20),
            id="a renewal stamped in the future (clock skew) is still waited for",
        ),
        pytest.param(lease(US, 1), Decision(Action.RENEW), id="a lease we hold is renewed"),
        pytest.param(
            lease(US, 600),
            Decision(Action.RENEW),
            id="an expired lease still naming us is renewed, as nobody took it over",
        ),
    ],
)
def test_decide(state: LeaseState | None, expected: Decision) -> None:
    assert decide(state, US, NOW, OUR_DURATION) == expected


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"renew_interval": 15.0}, id="renewing only as often as the lease lasts"),
        pytest.param({"renew_interval": 0.0}, id="renewing continuously"),
        pytest.param({"retry_interval": 0.0}, id="retrying without pause"),
    ],
)
def test_settings_reject(overrides: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="interval"):
        LeaseSettings(name="kubemint", namespace="kube-system", identity=US, **overrides)


# -- run_as_leader, with the Lease I/O replaced ----------------------------------------------


class ScriptedElector(LeaderElector):
    """An elector that holds the lease at once and loses it when told to."""

    def __init__(self) -> None:
        super().__init__(api=None, settings=LeaseSettings("l", "ns", US))
        self.lose = asyncio.Event()
        self.calls: list[str] = []

    async def acquire(self) -> None:
        self.calls.append("acquire")
        self._held = True

    async def keep(self) -> NoReturn:
        self.calls.append("keep")
        try:
            await self.lose.wait()
        except asyncio.CancelledError:
            self.calls.append("keep cancelled")
            raise
        self._held = False
        raise LeadershipLost("taken")

    async def release(self) -> None:
        self.calls.append(f"release (held={self._held})")
        self._held = False


async def test_work_that_finishes_stops_renewals_and_releases() -> None:
    elector = ScriptedElector()

    async def work(stop: asyncio.Event) -> None:
        await asyncio.sleep(0.01)

    await run_as_leader(elector, work)
    assert elector.calls == ["acquire", "keep", "keep cancelled", "release (held=True)"]


async def test_work_that_fails_is_reported_after_releasing() -> None:
    elector = ScriptedElector()

    async def work(stop: asyncio.Event) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await run_as_leader(elector, work)
    assert elector.calls[-1] == "release (held=True)"


async def test_lost_leadership_sets_the_stop_flag_and_raises() -> None:
    elector = ScriptedElector()
    seen: list[str] = []

    async def work(stop: asyncio.Event) -> None:
        elector.lose.set()
        await stop.wait()
        seen.append("stopped")

    with pytest.raises(LeadershipLost):
        await run_as_leader(elector, work)
    assert seen == ["stopped"]
    assert elector.calls == ["acquire", "keep", "release (held=False)"]


async def test_work_that_ignores_the_stop_flag_is_cancelled_after_the_timeout() -> None:
    elector = ScriptedElector()
    seen: list[str] = []

    async def work(stop: asyncio.Event) -> None:
        elector.lose.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append(f"cancelled with stop={stop.is_set()}")
            raise

    with pytest.raises(LeadershipLost):
        await run_as_leader(elector, work, stop_timeout=0.05)
    assert seen == ["cancelled with stop=True"]


async def test_cancelling_the_leader_cancels_the_work_and_releases() -> None:
    elector = ScriptedElector()
    started = asyncio.Event()
    seen: list[str] = []

    async def work(stop: asyncio.Event) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append("work cancelled")
            raise

    leader = asyncio.create_task(run_as_leader(elector, work))
    await started.wait()
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert seen == ["work cancelled"]
    assert elector.calls[-2:] == ["keep cancelled", "release (held=True)"]
