"""kopf's toggle sets, made to wake their waiters only when the set's state changes.

On every start (and after every re-won lease) kopf delays handling until each existing object
has been indexed: each object's worker adds a toggle to one set, drops it once indexed, then
waits until the whole set is on. kopf's ToggleSet wakes every waiter on every add and drop, so
N objects cost N² wake-ups, each through one shared lock: with 1,000 clients a start took
minutes of CPU on the operator's event loop (py-spy: make_toggle, notify_all, wait_for), long
enough to miss lease renewals, step down, relist and start over; with 10,000 it never ended.

Adding or dropping a toggle changes nothing a waiter waits for unless it flips the set's state,
so only then are the waiters woken. A child toggle's own turn_to() still wakes them all, as in
kopf (the indexing set never turns its children, it only adds and drops them).
"""

from __future__ import annotations

from collections.abc import Iterable

from kopf._cogs.aiokits import aiotoggles


class TransitionToggleSet(aiotoggles.ToggleSet):
    async def make_toggle(
        self,
        __val: bool = False,
        *,
        name: str | None = None,
    ) -> aiotoggles.Toggle:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            before = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != before:
                self._condition.notify_all()
        return toggle

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        await self.drop_toggles([toggle])

    async def drop_toggles(self, toggles: Iterable[aiotoggles.Toggle]) -> None:
        async with self._condition:
            before = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != before:
                self._condition.notify_all()


def install() -> None:
    """Make kopf create TransitionToggleSets (kopf builds its sets from this module name)."""
    aiotoggles.ToggleSet = TransitionToggleSet  # type: ignore[misc]
