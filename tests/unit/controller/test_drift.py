"""Telling our own Secret writes from hand edits and deletions."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kubemint.controller.drift import drifted
from kubemint.controller.kube import ANNOTATION_DATA_HASH, data_hash


def _secret(data: dict[str, str], stamped: dict[str, str] | None) -> dict[str, Any]:
    annotations = {ANNOTATION_DATA_HASH: data_hash(stamped)} if stamped is not None else {}
    return {
        "metadata": {"annotations": annotations},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


@pytest.mark.parametrize(
    ("event", "secret", "reason"),
    [
        ("MODIFIED", _secret({"a": "1"}, {"a": "1"}), None),
        ("MODIFIED", _secret({"a": "2"}, {"a": "1"}), "edited"),
        ("MODIFIED", _secret({"a": "1", "b": "x"}, {"a": "1"}), "edited"),
        ("MODIFIED", _secret({"a": "1"}, None), "edited"),
        ("DELETED", _secret({"a": "1"}, {"a": "1"}), "deleted"),
    ],
    ids=[
        "our own write is not drift",
        "a changed value is an edit",
        "an added key is an edit",
        "a lost content stamp is an edit",
        "a deletion is drift",
    ],
)
def test_drift_is_detected_from_the_content_stamp(
    event: str, secret: dict[str, Any], reason: str | None
) -> None:
    assert drifted(event, secret) == reason


def test_the_stamp_does_not_depend_on_key_order() -> None:
    assert data_hash({"a": "1", "b": "2"}) == data_hash({"b": "2", "a": "1"})
