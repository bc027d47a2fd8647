"""Ordered check chains (cert-manager style): the first failing check decides Ready=False.

A check is a small named function returning an Outcome on failure and None when satisfied,
so each reason/message pair is written once, next to the rule it explains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from kubemint.api.meta import Outcome

S = TypeVar("S")
C = TypeVar("C")
Check = Callable[[S, C], Outcome | None]


def evaluate(checks: Sequence[Check[S, C]], spec: S, context: C) -> Outcome:
    for check in checks:
        failure = check(spec, context)
        if failure is not None:
            return failure
    return Outcome.ok()
