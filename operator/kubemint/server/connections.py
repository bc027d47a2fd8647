"""Connection limits uvicorn lacks: a deadline for reading a request, a cap on header bytes and
on open connections.

uvicorn only times out idle keep-alive connections: a client that sends a request line and
then one header byte every few seconds holds its connection (a file descriptor, a parser,
buffers) for ever, and httptools accepts headers of any size. Finding 6 of issue 10 kept 300
such connections open indefinitely. This protocol is uvicorn's own httptools protocol with:

- a read deadline: from the connection's first byte (or, on a kept-alive connection, from
  the next request's first byte) until the request's body is complete. Missed while the
  headers are still arriving: `408` and close; while the body is: close (the app sees the
  client disconnect). Idle time between requests stays uvicorn's `timeout_keep_alive`.
- a header cap: the request target and headers together; beyond it `431` and close.
- a connection cap: a connection beyond it gets `503` with `Retry-After` and is closed
  before anything is read, so a flood costs file descriptors only up to the cap.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("kubemint.server")


@dataclass(frozen=True)
class ConnectionLimits:
    read_timeout: float = 10.0
    """Seconds to receive a request's headers and body, from its first byte."""
    max_header_bytes: int = 32 * 1024
    """Request target plus header names and values, in bytes."""
    max_connections: int = 1024
    """Open connections at once; more are answered 503 and closed."""


class HeadersTooLarge(Exception):
    """Raised inside the parser: httptools stops, and uvicorn answers (send_400_response)."""


def _response(status: bytes, body: dict[str, str] | None, *extra: bytes) -> bytes:
    content = json.dumps(body).encode() if body else b""
    head = [b"HTTP/1.1 " + status, b"connection: close", *extra]
    if content:
        head.append(b"content-type: application/json")
        head.append(b"cache-control: no-store")
    head.append(b"content-length: " + str(len(content)).encode())
    return b"\r\n".join(head) + b"\r\n\r\n" + content


TIMED_OUT = _response(b"408 Request Timeout", None)
TOO_LARGE = _response(b"431 Request Header Fields Too Large", None)
OVERLOADED = _response(
    b"503 Service Unavailable",
    {"error": "temporarily_unavailable", "error_description": "too many open connections"},
    b"retry-after: 1",
)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol under `ConnectionLimits` (see the module docstring)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    _deadline: asyncio.TimerHandle | None = None
    _header_bytes = 0
    _headers_done = False
    _too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        over = len(self.connections) >= self.limits.max_connections
        super().connection_made(transport)
        if over:
            log.warning("refused a connection: %d already open", len(self.connections) - 1)
            transport.write(OVERLOADED)
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes, self._headers_done = 0, False
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._headers_done = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            super().send_400_response(msg)
            return
        self.transport.write(TOO_LARGE)
        self.transport.close()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes:
            self._too_large = True
            raise HeadersTooLarge

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.limits.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        # 408 only when no response of this connection is under way (else it would be cut).
        if not self._headers_done and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(TIMED_OUT)
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpProtocol]:
    """The protocol class for `uvicorn.run(http=...)` under `limits`."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})
