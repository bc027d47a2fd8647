"""Durations as the CRDs accept them, timestamps, and conditions."""

from __future__ import annotations

import datetime

import pytest

from kubemint.api.meta import InvalidDuration, Outcome, parse_duration, set_condition

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("720h", 2_592_000),
        ("15m", 900),
        ("90s", 90),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("1.5h", 5400),
    ],
)
def test_go_style_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "30d", "h", "15", "1h 30m", "-5m"])
def test_anything_else_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(InvalidDuration, match="720h"):
        parse_duration(text)


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = set_condition(None, "Ready", Outcome(False, "Missing", "m"), 1, T0)
    later = T0 + datetime.timedelta(minutes=5)
    same = set_condition(first, "Ready", Outcome(False, "StillMissing", "m2"), 2, later)
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert (same[0]["reason"], same[0]["observedGeneration"]) == ("StillMissing", 2)
    flipped = set_condition(same, "Ready", Outcome.ok(), 2, later)
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert flipped[0]["status"] == "True"


def test_setting_one_condition_leaves_the_others() -> None:
    both = set_condition(
        set_condition(None, "Ready", Outcome.ok(), 1, T0), "Other", Outcome.ok(), 1, T0
    )
    assert [c["type"] for c in both] == ["Ready", "Other"]
    updated = set_condition(both, "Ready", Outcome(False, "X", "y"), 1, T0)
    assert [(c["type"], c["status"]) for c in updated] == [("Ready", "False"), ("Other", "True")]
