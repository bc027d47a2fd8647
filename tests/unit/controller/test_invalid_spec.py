"""An object whose spec Python cannot read is reported on its own status (Ready=False,
InvalidSpec, the field named) instead of a handler failing and retrying in silence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kubemint.api.accessrule import RuleSpec
from kubemint.api.oauth2client import ClientSpec
from kubemint.api.serviceaccount import AccountSpec
from kubemint.api.signingkey import SigningKeySpec
from kubemint.controller.runtime import INVALID_SPEC, invalid_spec

OVERFLOW = "99999999999999999999999999999h"


def _body(**spec: Any) -> dict[str, Any]:
    meta = {"namespace": "evil", "name": "bomb", "uid": "u", "generation": 3}
    return {"metadata": meta, "spec": spec}


@pytest.mark.parametrize(
    ("parse", "spec", "field"),
    [
        (ClientSpec.from_body, {"secret": {"overlap": OVERFLOW}}, "spec.secret.overlap"),
        (ClientSpec.from_body, {"tokenLifetime": "25h"}, "spec.tokenLifetime"),
        (
            AccountSpec.from_body,
            {"appPasswords": {"secretName": "pw", "overlap": OVERFLOW}},
            "spec.appPasswords.overlap",
        ),
        (SigningKeySpec.from_body, {"rotation": {"every": OVERFLOW}}, "spec.rotation.every"),
        (
            SigningKeySpec.from_body,
            {"rotation": {"retainAfter": OVERFLOW}},
            "spec.rotation.retainAfter",
        ),
    ],
)
def test_a_duration_beyond_its_bound_is_reported_naming_the_field(
    parse: Callable[[Any], object], spec: dict[str, Any], field: str
) -> None:
    status = invalid_spec(_body(**spec), parse)
    assert status is not None
    (ready,) = status["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", INVALID_SPEC)
    assert ready["message"].startswith(f"{field}: ")
    assert ready["observedGeneration"] == 3


def test_a_spec_that_reads_is_left_to_the_reconcile() -> None:
    assert invalid_spec(_body(secret={"overlap": "2h"}), ClientSpec.from_body) is None
    assert invalid_spec(_body(audience="https://a.test"), RuleSpec.from_body) is None


def test_an_arithmetic_error_from_a_parser_is_reported_too() -> None:
    def overflowing(_: Any) -> object:
        raise OverflowError("date value out of range")

    status = invalid_spec(_body(), overflowing)
    assert status is not None
    assert status["conditions"][0]["message"] == "date value out of range"
