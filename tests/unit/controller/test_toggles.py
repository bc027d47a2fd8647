"""The indexing toggle set wakes its waiters when its state changes, not on every change."""

from __future__ import annotations

import asyncio

from kopf._cogs.aiokits import aiotoggles

from kubemint.controller.toggles import TransitionToggleSet

OBJECTS = 300


async def _start_like_kopf(toggles: aiotoggles.ToggleSet) -> int:
    """What kopf does on a start with OBJECTS existing objects: each worker adds a toggle,
    drops it once its object is indexed and waits for the whole set. Returns how often a
    waiter was woken to re-check the set."""
    checks = 0
    original = toggles.is_on

    def counted() -> bool:
        nonlocal checks
        checks += 1
        return original()

    toggles.is_on = counted  # type: ignore[method-assign]

    async def worker(toggle: aiotoggles.Toggle) -> None:
        await asyncio.sleep(0)  # indexing the object
        await toggles.drop_toggle(toggle)
        await toggles.wait_for(True)

    workers = []
    for i in range(OBJECTS):  # the watcher: one listed object after another
        toggle = await toggles.make_toggle(name=str(i))
        workers.append(asyncio.create_task(worker(toggle)))
        await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=60)
    return checks


def test_all_waiters_are_released_once_every_object_is_indexed() -> None:
    checks = asyncio.run(_start_like_kopf(TransitionToggleSet(all)))
    # kopf's own ToggleSet needs about OBJECTS² / 2 checks (45,000 here; 50 million at
    # 10,000 objects); this one a few per object.
    assert checks <= 6 * OBJECTS, checks


def test_kopfs_own_set_is_quadratic_which_is_why_it_is_replaced() -> None:
    checks = asyncio.run(_start_like_kopf(aiotoggles.ToggleSet(all)))
    assert checks > OBJECTS * OBJECTS // 4, checks


def test_a_child_turning_off_still_pauses_and_turning_on_resumes() -> None:
    async def scenario() -> None:
        toggles = TransitionToggleSet(any)  # as kopf's operator_paused
        paused = await toggles.make_toggle(name="peering")
        assert toggles.is_off()
        await paused.turn_to(True)
        await asyncio.wait_for(toggles.wait_for(True), timeout=1)
        waiting = asyncio.create_task(toggles.wait_for(False))
        await asyncio.sleep(0)
        assert not waiting.done()
        await toggles.drop_toggle(paused)
        await asyncio.wait_for(waiting, timeout=1)

    asyncio.run(scenario())
