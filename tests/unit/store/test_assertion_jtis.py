"""The shared jti records' format: names and GC slots (the API behaviour is in
tests/integration/test_client_libraries.py, against a real API server)."""

from __future__ import annotations

import re

import pytest

from kubemint.oauth.assertions import LEEWAY
from kubemint.store.assertion_jtis import (
    CLIENT,
    NAMESPACE,
    SLOT,
    SWEEP_EVERY,
    ClaimBudget,
    OverBudget,
    live_slots,
    longest_remembered,
    record_body,
    record_name,
    records_bound,
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
    longest = longest_remembered(3600, LEEWAY)
    for written in (0.0, 599.0, 600.0, 12_345.6, 570.0):
        expires = written + longest  # the longest an accepted assertion is remembered
        slot = slot_of(expires)
        assert slot * SLOT > expires  # its slot ends after its expiry
        # Live (kept) at every moment until it expires, wherever within [written, expires].
        for now in (written, (written + expires) / 2, expires):
            assert slot in live_slots(now, longest), (written, now)
        # Swept one slot after it expired (one slot of margin for clock skew).
        assert slot not in live_slots(expires + 2 * SLOT, longest)


def test_an_assertion_issued_a_leeway_ahead_is_remembered_until_its_exp_plus_leeway() -> None:
    """`iat` may be 30 s ahead of our clock and `exp` an hour after it: its record is needed
    until now + 3600 + 2 x 30, which must be within what the sweeper keeps (at now = 550, a
    record of now + 3630 is in slot 7 but one of now + 3660 in slot 8)."""
    now = 550.0
    expires = now + LEEWAY + 3600 + LEEWAY
    assert slot_of(expires) in live_slots(now, longest_remembered(3600, LEEWAY))


def test_the_record_has_the_labels_the_sweeper_selects_and_names_the_client_s_namespace() -> None:
    body = record_body("kubemint-system", "tasks", "tasks.app", "j", 1200.0)
    assert body["metadata"]["labels"] == {
        "kubemint.io/role": "assertion-jtis",
        "app.kubernetes.io/managed-by": "kubemint",
        "kubemint.io/jti-expires": "3",
        "kubemint.io/jti-namespace": "tasks",
    }


def _budget(per_client: int, per_namespace: int, now: list[float]) -> ClaimBudget:
    return ClaimBudget(per_client, per_namespace, clock=lambda: now[0])


def test_each_client_may_claim_its_budget_per_minute_and_no_more() -> None:
    now = [120.0]
    budget = _budget(3, 100, now)
    for _ in range(3):
        budget.spend("tasks", "tasks.app")
    with pytest.raises(OverBudget) as over:
        budget.spend("tasks", "tasks.app")
    assert (over.value.budget, over.value.retry_after) == (CLIENT, 60)
    budget.spend("tasks", "tasks.other")  # another client is not affected
    now[0] = 150.0
    with pytest.raises(OverBudget) as over:
        budget.spend("tasks", "tasks.app")
    assert over.value.retry_after == 30
    now[0] = 180.0  # the next minute
    budget.spend("tasks", "tasks.app")


def test_all_clients_of_a_namespace_share_its_budget_and_other_namespaces_keep_theirs() -> None:
    """The attack: many clients, each far under its own budget, together over the namespace's."""
    now = [600.5]
    budget = _budget(3, 5, now)
    for i in range(5):
        budget.spend("evil", f"evil.c{i}")
    with pytest.raises(OverBudget) as over:
        budget.spend("evil", "evil.c99")  # a fresh client of the same namespace
    assert (over.value.budget, over.value.retry_after) == (NAMESPACE, 60)  # ceil(59.5)
    for _ in range(3):
        budget.spend("victim", "victim.app")  # another namespace: its full client budget
    now[0] = 660.0  # the next minute: the namespace may claim again
    budget.spend("evil", "evil.c99")


def test_a_refused_claim_counts_against_neither_budget() -> None:
    now = [0.0]
    budget = _budget(2, 3, now)
    budget.spend("ns", "ns.a")
    budget.spend("ns", "ns.a")
    for _ in range(10):  # the client is spent: its refusals must not spend the namespace
        with pytest.raises(OverBudget):
            budget.spend("ns", "ns.a")
    budget.spend("ns", "ns.b")
    with pytest.raises(OverBudget) as over:
        budget.spend("ns", "ns.c")
    assert over.value.budget == NAMESPACE
    budget.spend("other", "ns.c")  # ns.c was not counted either (a key per client id)


def test_only_the_first_refusal_in_a_minute_is_marked_first_for_the_log() -> None:
    now = [0.0]
    budget = _budget(10, 1, now)
    budget.spend("ns", "ns.a")
    firsts = []
    for client in ("ns.a", "ns.b", "ns.c"):
        with pytest.raises(OverBudget) as over:
            budget.spend("ns", client)
        firsts.append(over.value.first)
    assert firsts == [True, False, False]
    now[0] = 60.0
    budget.spend("ns", "ns.a")
    with pytest.raises(OverBudget) as over:
        budget.spend("ns", "ns.a")
    assert over.value.first  # a new minute: logged again


@pytest.mark.parametrize(
    ("per_minute", "longest", "expected"),
    [
        # 3660 s remembered + 2 slots + one sweep = 5160 s = 86 minutes, touching 87 windows.
        (120, longest_remembered(3600, LEEWAY), 120 * 87),
        (60, longest_remembered(3600, LEEWAY), 60 * 87),
        # kubemint's own 60 s assertions: 120 + 1200 + 300 s = 27 minutes, 28 windows.
        (120, longest_remembered(60, LEEWAY), 120 * 28),
    ],
)
def test_the_documented_bound_on_live_records(
    per_minute: int, longest: float, expected: int
) -> None:
    assert records_bound(per_minute, longest) == expected


def test_the_bound_holds_for_claims_at_the_budget_as_fast_as_allowed() -> None:
    """Simulate claims at the namespace budget (many clients, refused ones retried every
    second) and count the records alive at each moment, with the sweeper's own rule."""
    longest = longest_remembered(3600, LEEWAY)
    now = [0.0]
    budget = _budget(10**6, 120, now)
    alive: list[int] = []  # the slots of the live records
    most = 0
    for second in range(9000):  # 2.5 h: past the 86 minutes a record may live
        now[0] = float(second)
        if second % SWEEP_EVERY == 0:  # the sweeper deletes every slot no longer live
            live = set(live_slots(now[0], longest))
            alive = [slot for slot in alive if slot in live]
        for client in range(3):  # three claims a second: 180 a minute are tried
            try:
                budget.spend("evil", f"evil.c{client}")
            except OverBudget:
                continue
            alive.append(slot_of(now[0] + longest))  # each assertion as long-lived as allowed
        most = max(most, len(alive))
    assert most <= records_bound(120, longest)
    assert most > records_bound(120, longest) * 0.9  # and the bound is not loose
