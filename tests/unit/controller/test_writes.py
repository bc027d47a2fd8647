"""Writes a new object does not need: no re-check timer (and so no kopf finalizer added and
removed again) before an object was first handled, and no poke of the AccessRule whose own
reconcile wrote its audience's ownership record."""

from __future__ import annotations

from typing import Any, cast

import pytest

from kubemint.controller.audiences import Records
from kubemint.controller.kube import Kube
from kubemint.controller.runtime import needs_recheck


def _ready(status: str) -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": "Reconciled"}


@pytest.mark.parametrize(
    ("status", "pending", "wanted"),
    [
        pytest.param({}, (), False, id="a never handled object has no timer yet"),
        pytest.param(
            {"conditions": [{"type": "Other", "status": "False"}]},
            (),
            False,
            id="an object without a Ready condition has not been handled either",
        ),
        pytest.param({"conditions": [_ready("False")]}, (), True, id="a handled, not Ready one"),
        pytest.param({"conditions": [_ready("True")]}, ("next",), False, id="Ready, none due"),
        pytest.param(
            {"conditions": [_ready("True")], "next": "2030-01-01T00:00:00Z"},
            ("next",),
            True,
            id="a Ready one with a scheduled change pending",
        ),
    ],
)
def test_needs_recheck(status: dict[str, Any], pending: tuple[str, ...], wanted: bool) -> None:
    assert needs_recheck(status, *pending) is wanted


def _records() -> Records:
    return Records(cast(Kube, None), "kubemint-system")  # no API call in what is tested


def test_the_rule_that_wrote_a_record_version_is_not_poked_for_it() -> None:
    records = _records()
    records._remember("https://api", {"metadata": {"resourceVersion": "7"}}, ("team", "r"))
    assert records.up_to_date("https://api", "6") is None  # another version: poke everyone
    assert records.up_to_date("https://api", "7") == ("team", "r")
    assert records.up_to_date("https://api", "7") is None  # asked once: a relist pokes it too


def test_a_record_written_for_no_rule_pokes_every_rule() -> None:
    records = _records()
    records._remember("https://api", {"metadata": {"resourceVersion": "7"}}, None)
    records._remember("https://other", None, ("team", "r"))  # no answer: nothing to trust
    assert records.up_to_date("https://api", "7") is None
    assert records.up_to_date("https://other", "") is None
