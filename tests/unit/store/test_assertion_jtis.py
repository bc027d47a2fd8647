"""The shared jti records' format: names and GC slots (the API behaviour is in
tests/integration/test_client_libraries.py, against a real API server)."""

from __future__ import annotations

import re

import pytest

from kubemint.store.assertion_jtis import (
    SLOT,
    ClaimBudget,
    OverBudget,
    live_slots,
    record_body,
    record_name,
    slot_of,
)


def test_a_record_name_is_a_valid_fixed_length_name_for_any_jti() -> None:
    names = {record_name("tasks.app", jti) for jti in ("a", "A" * 256, "ünï/\\:*?", "")}
    assert len(names) == 4
    assert all(re.fullmatch(r"kubemint-jti-[0-9a-f]{40}", name) for name in names)


def test_the_client_and_the_jti_cannot_be_shifted_into_each_other() -> None:
    assert record_name("tasks.a", "bc") != record_name("tasks.ab", "c")
    assert record_name("tasks.a", "x") != record_name("tasks.b", "x")


def test_a_record_is_swept_only_once_nothing_it_holds_can_be_accepted() -> None:
    longest = 3600 + 30
    for written in (0.0, 599.0, 600.0, 12_345.6):
        expires = written + longest  # the longest an accepted assertion is remembered
        slot = slot_of(expires)
        assert slot * SLOT > expires  # its slot ends after its expiry
        # Live (kept) at every moment until it expires, wherever within [written, expires].
        for now in (written, (written + expires) / 2, expires):
            assert slot in live_slots(now, longest), (written, now)
        # Swept one slot after it expired (one slot of margin for clock skew).
        assert slot not in live_slots(expires + 2 * SLOT, longest)


def test_the_record_has_the_labels_the_sweeper_selects() -> None:
    body = record_body("kubemint-system", "tasks.app", "j", 1200.0)
    assert body["metadata"]["labels"] == {
        "kubemint.io/role": "assertion-jtis",
        "app.kubernetes.io/managed-by": "kubemint",
        "kubemint.io/jti-expires": "3",
    }


def test_each_client_may_claim_its_budget_per_minute_and_no_more() -> None:
    now = [120.0]
    budget = ClaimBudget(3, clock=lambda: now[0])
    for _ in range(3):
        budget.spend("tasks.app")
    with pytest.raises(OverBudget) as over:
        budget.spend("tasks.app")
    assert over.value.retry_after == 60
    budget.spend("tasks.other")  # another client is not affected
    now[0] = 150.0
    with pytest.raises(OverBudget) as over:
        budget.spend("tasks.app")
    assert over.value.retry_after == 30
    now[0] = 180.0  # the next minute
    budget.spend("tasks.app")
