"""Graceful shutdown for rolling upgrades: a token-server pod leaves without failing a request.

When a pod is deleted, the kubelet sends SIGTERM while the Service's EndpointSlices and every
node's kube-proxy are still catching up: for a moment new connections keep arriving. So on
SIGTERM the server first *drains* for `delay` seconds: /readyz answers 503 `shutting_down`,
every request is still served, and each response carries `Connection: close` so that clients
drop their kept-alive connections to this pod and reconnect (to the pods that stay). Only then
does uvicorn's own graceful shutdown run: the listener closes, idle connections are closed,
and the requests in flight get `timeout` seconds to finish. A second SIGTERM, or SIGINT (a
person at a terminal), skips the drain.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("kubemint.server")


class Drain:
    """Whether this server is shutting down (set once, read by /readyz and the middleware)."""

    def __init__(self) -> None:
        self._since: float | None = None

    def begin(self) -> None:
        if self._since is None:
            self._since = time.monotonic()

    @property
    def active(self) -> bool:
        return self._since is not None


class CloseWhileDraining:
    """ASGI middleware: while draining, responses say `Connection: close`."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.drain.active:
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose SIGTERM drains for `delay` seconds before shutting down."""

    def __init__(self, config: uvicorn.Config, drain: Drain, delay: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.delay = delay

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.delay <= 0 or self.drain.active:
            super().handle_exit(sig, frame)
            return
        self.drain.begin()
        log.info("SIGTERM: draining for %.1f s (readyz 503, Connection: close)", self.delay)
        timer = threading.Timer(self.delay, super().handle_exit, args=(sig, None))
        timer.daemon = True
        timer.start()
