"""What the token server writes on its hot path: JSON responses and audit lines, cheaply.

Responses are Starlette's `JSONResponse` (compact UTF-8 JSON, kubemint.crypto.compact_json
encoding it several times faster), audit lines exactly `logging`'s; the per-request set-up
is gone. `json.dumps` with any option builds a new encoder per call, and
`Logger.info` walks the stack to find its caller (`findCaller`) for a record whose file
and line the server's log format never shows: per token request these cost about as much
as the whole claim set. See docs/benchmarks.md, "Where a token request's time goes".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from kubemint.crypto import compact_json
from kubemint.logs import AuditHandler

audit_log = logging.getLogger("kubemint.audit")
# json.dumps' defaults for the audit line (its documented format, spaces included).
_AUDIT = json.JSONEncoder()


class JSON(JSONResponse):
    """`JSONResponse` (the same compact UTF-8 JSON), encoded by orjson."""

    def render(self, content: Any) -> bytes:
        return compact_json.dumps(content)


class NoStoreJSON(JSON):
    """`JSON(content, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})` (RFC 6749
    §5.1: every token response), byte for byte, with those headers encoded once."""

    _HEAD = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))
    _TYPE = (b"content-type", b"application/json")

    def __init__(self, content: Any) -> None:  # Response.__init__, inlined
        self.status_code = 200
        self.background = None
        self.body = self.render(content)
        self.raw_headers = [
            *self._HEAD,
            (b"content-length", str(len(self.body)).encode("latin-1")),
            self._TYPE,
        ]


def audit(kind: str, fields: Mapping[str, Any]) -> None:
    """One audit line, `<kind> <JSON>` at INFO on `kubemint.audit` (the handlers, filters
    and format the process configured), without locating the caller's source line; written
    directly (kubemint.logs.AuditHandler) when the process's own audit handler is the only
    one that would see the record."""
    if not audit_log.isEnabledFor(logging.INFO):
        return
    encoded = _AUDIT.encode(fields)
    handlers = audit_log.handlers
    if (
        len(handlers) == 1
        and type(handlers[0]) is AuditHandler
        and not audit_log.propagate
        and not audit_log.filters
        and not audit_log.disabled
        and handlers[0].direct()
    ):
        handlers[0].write(kind, encoded, time.time())
        return
    record = audit_log.makeRecord(
        audit_log.name, logging.INFO, "(audit)", 0, kind + " %s", (encoded,), None
    )
    audit_log.handle(record)
