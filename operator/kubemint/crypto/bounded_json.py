"""JSON from untrusted bytes (token headers and claims, key documents), nesting bounded.

`json.loads` recurses once per nesting level and raises RecursionError (not ValueError)
near the interpreter's limit, wherever on the stack it happens to run: a 16 KB token header
of `[[[[...` was a 500 with a traceback. Nothing kubemint reads nests deeper than a few
levels, so anything deeper than `MAX_DEPTH` is refused before parsing, as ValueError.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class TooDeep(ValueError):
    """The document nests deeper than allowed."""


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads(raw)` for UTF-8 JSON nesting at most `max_depth` levels; else ValueError."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw  # RFC 8259 §8.1: UTF-8
    # Fast path: fewer brackets than the limit cannot nest deeper (token headers, claims).
    if text.count("[") + text.count("{") > max_depth and depth(text) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except RecursionError:  # not reachable within MAX_DEPTH; kept as the last line of defence
        raise TooDeep("JSON nested too deeply") from None


def depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text`, strings ignored. An unterminated
    string counts its brackets (the document is invalid JSON anyway)."""
    deepest = level = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        if bracket in "[{":
            level += 1
            deepest = max(deepest, level)
        else:
            level -= 1
    return deepest
