"""compact_json writes what `json` writes for the token path's documents, faster, and falls
back to `json` for what orjson refuses."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from kubemint.crypto import compact_json

DOCUMENTS: list[Any] = [
    {"iss": "https://kubemint.example", "exp": 1764650000, "scope": "read write"},
    {"é": "ünïcode ✓", "nested": {"list": [1, 2.5, None, True, "x"]}, "empty": {}},
    {"control": "line\nbreak\t\u0000", "quote": '"\\'},
    [],
]


def _stdlib(document: Any, sort_keys: bool = False) -> bytes:
    return json.dumps(
        document, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys
    ).encode()


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_same_bytes_as_the_standard_library(document: Any) -> None:
    assert compact_json.dumps(document) == _stdlib(document)
    assert b"\n" not in compact_json.dumps(document)  # the sandbox frames messages by lines


def test_sort_keys_sorts_nested_objects() -> None:
    document = {"b": {"z": 1, "a": 2}, "a": [{"y": 1, "x": 2}]}
    assert compact_json.dumps(document, sort_keys=True) == _stdlib(document, sort_keys=True)
    assert compact_json.dumps(document, sort_keys=True).startswith(b'{"a":[{"x":2,"y":1}]')


@pytest.mark.parametrize("sort_keys", [False, True])
def test_integers_beyond_64_bits_fall_back_to_the_standard_library(sort_keys: bool) -> None:
    document = {"b": 2**70, "a": -(2**64), "c": [2**63 - 1]}
    assert compact_json.dumps(document, sort_keys=sort_keys) == _stdlib(document, sort_keys)


def test_default_is_used_by_both_paths() -> None:
    when = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)
    assert json.loads(compact_json.dumps({"t": when}, default=str)) == {"t": str(when)}
    big = {"t": when, "n": 2**70}
    assert json.loads(compact_json.dumps(big, default=str)) == {"t": str(when), "n": 2**70}


def test_what_neither_can_write_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        compact_json.dumps({"x": object()})
