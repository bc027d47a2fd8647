"""What the token server writes on its hot path: JSON responses and audit lines, cheaply.

The bytes are exactly Starlette's `JSONResponse` and `logging`'s; only the per-request
set-up is gone. `json.dumps` with any option builds a new encoder per call, and
`Logger.info` walks the stack to find its caller (`findCaller`) for a record whose file
and line the server's log format never shows: per token request these cost about as much
as the whole claim set. See README.md, "Where a token request's time goes".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

audit_log = logging.getLogger("kubemint.audit")
# Starlette's JSONResponse.render options, and json.dumps' defaults for the audit line.
_RESPONSE = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
)
_AUDIT = json.JSONEncoder()


class JSON(JSONResponse):
    """`JSONResponse`, byte for byte, with one encoder for all responses."""

    def render(self, content: Any) -> bytes:
        return _RESPONSE.encode(content).encode("utf-8")


def audit(kind: str, fields: Mapping[str, Any]) -> None:
    """One audit line, `<kind> <JSON>` at INFO on `kubemint.audit` (the handlers, filters
    and format the process configured), without locating the caller's source line."""
    if audit_log.isEnabledFor(logging.INFO):
        record = audit_log.makeRecord(
            audit_log.name, logging.INFO, "(audit)", 0, kind + " %s", (_AUDIT.encode(fields),), None
        )
        audit_log.handle(record)
