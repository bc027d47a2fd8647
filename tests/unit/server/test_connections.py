"""The read deadline and caps of kubemint.server.connections, on a real uvicorn in-process
(the slow-client attack on the real token server is tests/integration/test_hostile_requests)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from kubemint.config import ServerSettings
from kubemint.devcluster.controlplane import free_port
from kubemint.server.connections import ConnectionLimits, guarded_protocol

LIMITS = ConnectionLimits(read_timeout=0.5, max_header_bytes=2048, max_connections=8)
disconnects: list[str] = []


async def echo(request: Request) -> Response:
    try:
        body = await request.body()
    except ClientDisconnect:
        disconnects.append(request.url.path)
        return PlainTextResponse("gone")
    return PlainTextResponse(f"ok {len(body)}")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = Starlette(routes=[Route("/{p:path}", echo, methods=["GET", "POST"])])
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="critical", http=guarded_protocol(LIMITS)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(5)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _until_closed(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def test_a_whole_request_is_answered(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n")
        sock.sendall(b"Connection: close\r\n\r\nab")
        assert _until_closed(sock).endswith(b"ok 2")


def test_headers_that_never_finish_get_408_at_the_deadline(port: int) -> None:
    with _connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # still sending: bytes keep arriving, the deadline still holds
            time.sleep(0.1)
            sock.sendall(b"X")
        answer = _until_closed(sock)
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert LIMITS.read_timeout - 0.05 <= took < LIMITS.read_timeout + 2


def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    with _connect(port) as sock:
        assert _until_closed(sock).startswith(b"HTTP/1.1 408 ")


def test_a_body_that_never_finishes_is_cut_and_the_app_sees_a_disconnect(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"POST /slow-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        assert _until_closed(sock) == b""
    deadline = time.monotonic() + 2
    while "/slow-body" not in disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "/slow-body" in disconnects


def test_the_deadline_is_per_request_not_per_connection(port: int) -> None:
    """Three quick requests on one kept-alive connection, spread over more than the deadline."""
    with _connect(port) as sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
            time.sleep(LIMITS.read_timeout * 0.6)


def test_oversized_headers_get_431(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n")
        assert _until_closed(sock).startswith(b"HTTP/1.1 431 ")
    with _connect(port) as sock:  # the request target counts too
        sock.sendall(b"GET /" + b"a" * 4096 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _until_closed(sock).startswith(b"HTTP/1.1 431 ")


def test_connections_beyond_the_cap_get_503_and_slots_free_up(port: int) -> None:
    held = [_connect(port) for _ in range(LIMITS.max_connections)]
    try:
        time.sleep(0.1)
        with _connect(port) as sock:
            answer = _until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"retry-after: 1\r\n" in answer
        assert answer.endswith(b'"error_description": "too many open connections"}')
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.1)
    test_a_whole_request_is_answered(port)


def test_settings_are_read_and_checked() -> None:
    env = {
        "KUBEMINT_REQUEST_READ_TIMEOUT": "2.5",
        "KUBEMINT_MAX_HEADER_BYTES": "8192",
        "KUBEMINT_MAX_CONNECTIONS": "50",
    }
    settings = ServerSettings.from_env(env)
    assert (settings.read_timeout, settings.max_header_bytes, settings.max_connections) == (
        2.5,
        8192,
        50,
    )
    defaults = ServerSettings.from_env({})
    assert (defaults.read_timeout, defaults.max_header_bytes, defaults.max_connections) == (
        10.0,
        32 * 1024,
        1024,
    )
    for value in ("0", "-1", "nan", "inf", "ten"):
        with pytest.raises(ValueError, match="KUBEMINT_REQUEST_READ_TIMEOUT"):
            ServerSettings.from_env({"KUBEMINT_REQUEST_READ_TIMEOUT": value})
