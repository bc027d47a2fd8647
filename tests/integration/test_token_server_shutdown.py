"""A token server leaving as a rolling upgrade makes it leave: SIGTERM, then drain, then exit.

While it drains, /readyz says 503 `shutting_down`, requests on kept-alive connections and on new
ones are still answered (each with `Connection: close`), and a request still being sent when the
listener closes is answered too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx

from kubemint.devcluster.components import token_server_process, wait_for_http
from tests.integration.conftest import RunningOperator
from tests.integration.kube_helpers import apply, custom, secret_data, wait_for, wait_ready

DELAY = 3.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_sigterm_drains_then_finishes_in_flight_requests(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    cluster = operator.cluster
    audience = f"https://{namespace}.drain.test"
    apply(
        cluster,
        custom("OAuth2Client", "roller", namespace, audiences=[audience], scopes=["read"]),
        custom(
            "AccessRule",
            "roller",
            namespace,
            audience=audience,
            scopes=["read"],
            subjects=[{"kind": "OAuth2Client", "name": "roller"}],
        ),
    )
    wait_ready(cluster, "OAuth2Client", namespace, "roller")
    creds = secret_data(cluster, namespace, "roller-credentials") or {}
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = token_server_process(
        cluster,
        namespace=operator.namespace,
        issuer=base,
        port=port,
        name="draining",
        log_dir=tmp_path,
        extra_env={"KUBEMINT_SHUTDOWN_DELAY": str(DELAY), "KUBEMINT_SHUTDOWN_TIMEOUT": "10"},
    )
    process.start()
    form = "grant_type=client_credentials"
    auth = (creds["client-id"], creds["client-secret"])
    try:
        wait_for_http(base + "/readyz", process)
        with httpx.Client(base_url=base, auth=auth, timeout=5) as kept:
            wait_for(
                lambda: kept.post("/oauth2/token", content=form, headers=_FORM).is_success,
                "the server to know the client",
            )
            assert (
                kept.post("/oauth2/token", content=form, headers=_FORM).headers.get(
                    "connection", "keep-alive"
                )
                != "close"
            )
            assert process.pid is not None
            os.kill(process.pid, signal.SIGTERM)
            sent = time.monotonic()
            # The kept-alive connection is still served, and told to close.
            answer = kept.post("/oauth2/token", content=form, headers=_FORM)
            assert answer.is_success, answer.text
            assert answer.headers["connection"] == "close"
        ready = httpx.get(base + "/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["status"] == "shutting_down"
        # New connections keep working during the drain (kube-proxy may still send them).
        served = 0
        while time.monotonic() - sent < DELAY - 1:
            assert httpx.post(
                base + "/oauth2/token", content=form, headers=_FORM, auth=auth, timeout=5
            ).is_success
            served += 1
        assert served > 0
        # A request whose body is still on its way when the listener closes is answered.
        body = form.encode()
        raw = socket.create_connection(("127.0.0.1", port))
        raw.sendall(
            b"POST /oauth2/token HTTP/1.1\r\nhost: x\r\n"
            + b"content-type: application/x-www-form-urlencoded\r\n"
            + _basic(auth)
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body[:5]
        )
        wait_for(lambda: _refused(port), "the listener to close", timeout=DELAY + 5)
        raw.sendall(body[5:])
        raw.settimeout(5)
        reply = b""
        while chunk := raw.recv(65536):
            reply += chunk
        raw.close()
        head, _, payload = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), reply[:200]
        assert "access_token" in json.loads(payload)
        wait_for(lambda: not process.alive(), "the server to exit", timeout=15)
    finally:
        process.stop()
    assert "draining" in process.log_path.read_text()


_FORM = {"content-type": "application/x-www-form-urlencoded"}


def _basic(auth: tuple[str, str]) -> bytes:
    import base64

    return b"authorization: Basic " + base64.b64encode(":".join(auth).encode()) + b"\r\n"


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False
