"""/metrics on a port of its own, apart from the OAuth endpoints.

The main port is the one an Ingress or Gateway publishes; Prometheus scrapes from inside the
cluster. Serving /metrics only here means no path list, proxy rule or mistake in one can
publish it. The listener is plain HTTP (what a scraper expects; the metrics carry no secrets
and name no client) in a thread with its own event loop, so a slow scrape never delays a
token request. Its socket is bound before the token server starts: a taken port is an error
at start-up, not a silently missing listener.
"""

from __future__ import annotations

import socket
import threading

import uvicorn
from starlette.types import ASGIApp


class MetricsListener:
    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
        except OSError as exc:
            self.socket.close()
            raise OSError(f"cannot listen for /metrics on {host}:{port}: {exc.strerror}") from None
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
        )
        self._thread = threading.Thread(
            target=self.server.run, args=([self.socket],), name="metrics-listener", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        self.socket.close()
