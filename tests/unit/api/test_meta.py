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


@pytest.mark.parametrize(
    "text",
    [
        "99999999999999999999999999999h",  # matches the CRD pattern: a timedelta overflows
        "9" * 31 + "h",
        "87600h1ms",
        "43800h43800h1s",  # the parts add up beyond the bound
    ],
)
def test_a_duration_beyond_the_bound_is_invalid_and_names_the_field(text: str) -> None:
    with pytest.raises(InvalidDuration, match=r"spec\.secret\.overlap: .* longer than 87600h"):
        parse_duration(text, "spec.secret.overlap")


def test_the_bound_itself_parses_and_a_field_may_have_a_tighter_one() -> None:
    assert parse_duration("87600h") == datetime.timedelta(hours=87600)
    day = datetime.timedelta(hours=24)
    assert parse_duration("24h", "spec.tokenLifetime", day) == day
    with pytest.raises(InvalidDuration, match=r"spec\.tokenLifetime: 25h is longer than 24h"):
        parse_duration("25h", "spec.tokenLifetime", day)


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
