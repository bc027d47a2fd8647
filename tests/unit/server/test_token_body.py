"""How the token endpoint reads its body, message by message as uvicorn delivers it: chunks
joined, a streamed body over the limit refused with 413, a client gone mid-body a 400."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from kubemint.config import ServerSettings
from kubemint.server.app import create_app
from kubemint.store.view import StaticView
from tests.unit.records import build

LIMIT = 1024


def _post(messages: list[dict[str, Any]], length: int | None = None) -> tuple[int, dict[str, Any]]:
    """POST /oauth2/token with `messages` as what `receive` returns, in order."""
    app = create_app(
        ServerSettings(namespace="kubemint-system", issuer="https://kubemint.test", max_body=LIMIT),
        StaticView(build(clients=[], accounts=[], rules=[], signing_keys=[], secrets=[])),
    )
    headers = [(b"content-type", b"application/x-www-form-urlencoded")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/oauth2/token",
        "raw_path": b"/oauth2/token",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("10.0.0.1", 1234),
        "server": ("kubemint.test", 80),
    }
    pending = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def _chunks(body: bytes, size: int) -> list[dict[str, Any]]:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]


def test_a_body_in_chunks_is_read_whole() -> None:
    # No such client: the form was read whole when the error is about the client, not the body.
    body = b"grant_type=client_credentials&client_id=nobody&client_secret=" + b"x" * 40
    status, answer = _post(_chunks(body, 7))
    assert (status, answer["error"]) == (401, "invalid_client")


@pytest.mark.parametrize("chunk", [100, LIMIT + 1])
def test_a_streamed_body_over_the_limit_is_413_without_a_declared_length(chunk: int) -> None:
    status, answer = _post(_chunks(b"grant_type=client_credentials&x=" + b"y" * LIMIT, chunk))
    assert (status, answer["error"]) == (413, "invalid_request")
    assert answer["error_description"] == "request body too large"


def test_a_client_gone_mid_body_is_a_400_naming_the_body() -> None:
    messages = [{"type": "http.request", "body": b"grant_type=client_", "more_body": True}]
    status, answer = _post([*messages, {"type": "http.disconnect"}])
    assert (status, answer["error"]) == (400, "invalid_request")
    assert answer["error_description"] == "the request body did not arrive"
