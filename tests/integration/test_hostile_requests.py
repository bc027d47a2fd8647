"""Unauthenticated (or barely authenticated) hostile requests against the real token server.

Finding 6 of issue 10: an opaque token whose header is deeply nested JSON raised
RecursionError (a 500 with a logged traceback) at forward-auth, introspection and revocation;
forward-auth judged `/public/..;/admin` and `/public#/../admin` as `/public` (the `..;/`
bypass of Java upstreams, which read `..;` as `..`); 300 connections that sent their headers
one byte at a time stayed open for ever. Each test is the attack; the answer must be the
endpoint's ordinary refusal, and the server keeps serving.
"""

from __future__ import annotations

import base64
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from kubemint.devcluster.components import token_server_process, wait_for_http
from kubemint.devcluster.controlplane import free_port
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.forward_auth_setup import HOST, CalendarClient, calendar_client
from tests.integration.kube_helpers import wait_for

# Nesting depths around and far beyond CPython's recursion limit (1000).
DEPTHS = (40, 500, 900, 950, 990, 999, 1200, 5000)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def nested_tokens() -> Iterator[str]:
    """Opaque, JWS and JWE shaped tokens whose header nests JSON `depth` levels deep (cut to
    fit the 16 KiB token cap: a cut deep document still nests deeply)."""
    for depth in DEPTHS:
        for header in (
            b"[" * depth + b"]" * depth,
            b'{"kid":"k","alg":"ES256","x":' + b"[" * depth + b"]" * depth + b"}",
            b'{"a":' * depth + b"1" + b"}" * depth,
        ):
            segment = _b64(header)[:15000]
            yield "kmint_at_" + segment + ".AA.AA.AA.AA"
            yield segment + ".e30.AA"
            yield segment + ".AA.AA.AA.AA"
            yield _b64(b'{"alg":"ES256","kid":"k"}') + "." + segment + ".AA"


@pytest.fixture
def calendar(
    operator: RunningOperator, token_server: RunningServer, namespace: str
) -> CalendarClient:
    return calendar_client(operator, token_server, namespace)


@pytest.fixture
def http(token_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=token_server.issuer, timeout=10, trust_env=False) as client:
        yield client


def test_deeply_nested_token_headers_are_ordinary_rejections(
    token_server: RunningServer, calendar: CalendarClient, http: httpx.Client
) -> None:
    auth = (calendar.credentials["client-id"], calendar.credentials["client-secret"])
    tokens = list(nested_tokens())
    assert all(len(t) <= 16 * 1024 for t in tokens)  # within the token size cap
    for token in tokens:
        decided = http.get(
            "/authz/auth-request",
            params={"audience": calendar.audience},
            headers={
                "X-Original-URL": f"https://{HOST}/api/events",
                "X-Original-Method": "GET",
                "Authorization": f"Bearer {token}",
            },
        )
        assert decided.status_code == 401, (token[:40], decided.text)
        assert 'error="invalid_token"' in decided.headers["WWW-Authenticate"]
        introspected = http.post("/oauth2/introspect", data={"token": token}, auth=auth)
        assert introspected.status_code == 200, (token[:40], introspected.text)
        assert introspected.json() == {"active": False}
        revoked = http.post("/oauth2/revoke", data={"token": token}, auth=auth)
        assert revoked.status_code == 200, (token[:40], revoked.text)
        # A nested client assertion is an invalid_client (or, after many, slow_down).
        asserted = http.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": token,
            },
        )
        assert asserted.status_code in (400, 401, 429), (token[:40], asserted.text)
        assert asserted.json()["error"] in ("invalid_client", "invalid_request", "slow_down")
    assert "Traceback" not in token_server.log()
    assert "RecursionError" not in token_server.log()
    # The victim's own token still works.
    assert _nginx(http, calendar, "/api/events").status_code == 200


def _nginx(http: httpx.Client, calendar: CalendarClient, path: str) -> httpx.Response:
    return http.get(
        "/authz/auth-request",
        params={"audience": calendar.audience},
        headers={
            "X-Original-URL": f"https://{HOST}{path}",
            "X-Original-Method": "GET",
            "Authorization": f"Bearer {calendar.token}",
        },
    )


def _traefik(http: httpx.Client, calendar: CalendarClient, path: str) -> httpx.Response:
    return http.get(
        "/authz/forward-auth",
        params={"audience": calendar.audience},
        headers={
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Host": HOST,
            "X-Forwarded-Uri": path,
            "Authorization": f"Bearer {calendar.token}",
        },
    )


def _envoy(http: httpx.Client, calendar: CalendarClient, path: str) -> httpx.Response:
    return http.get(
        "/authz/ext-authz" + path,
        headers={
            "Host": HOST,
            "X-Kubemint-Audience": calendar.audience,
            "Authorization": f"Bearer {calendar.token}",
        },
    )


# Each reaches /api/admin (not covered: 403) on some upstream while reading as /api/events
# (covered by the calendar's GET rule) to a naive judge.
BYPASSES = (
    "/api/events/..;/admin",  # Tomcat, Jetty, Spring: `..;` is `..`
    "/api/events/..;x=1/admin",
    "/api/events/%2e%2e;/admin",
    "/api/events/.;/../admin",
    "/api/events;/../admin",
    "/api/events#/../admin",  # a fragment is never part of a request target
    "/api/events%23/../admin",
    "/api/events/%2e%2e/admin",
    "/api/events/%2E./admin",
    "/api/events/..%5cadmin",
    "/api/events/..\\admin",
    "/api/events/%09/../admin",
)


def test_servlet_path_parameters_and_fragments_cannot_bypass_forward_auth(
    calendar: CalendarClient, http: httpx.Client
) -> None:
    wait_for(
        lambda: _nginx(http, calendar, "/api/events").status_code == 200 or None,
        "the rule to be served",
    )
    assert _nginx(http, calendar, "/api/admin").status_code == 403
    for path in BYPASSES:
        for response in (_nginx(http, calendar, path), _traefik(http, calendar, path)):
            assert response.status_code == 400, (path, response.status_code, response.text)
            body = response.json()
            assert body["error"] == "invalid_request", path
            assert body["error_description"].startswith("the request path"), body
    # Envoy repeats the client's path after its prefix; a client cannot send a raw `#`.
    for path in ("/api/events/..;/admin", "/api/events/.;/admin", "/api/events/..;x/admin"):
        response = _envoy(http, calendar, path)
        assert response.status_code == 400, (path, response.text)
    # The victim's ordinary requests still pass.
    assert _traefik(http, calendar, "/api/events/42").status_code == 200
    assert _envoy(http, calendar, "/api/events").status_code == 200


READ_TIMEOUT = 3.0  # the guarded server's KUBEMINT_REQUEST_READ_TIMEOUT
MAX_CONNECTIONS = 400
SLOW = 300


@pytest.fixture(scope="module")
def guarded(
    operator: RunningOperator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A token server of its own with a short read deadline (the default is 10 s)."""
    port = free_port()
    process = token_server_process(
        operator.cluster,
        namespace=operator.namespace,
        issuer=operator.issuer,
        port=port,
        name="guarded",
        log_dir=tmp_path_factory.mktemp("guarded"),
        extra_env={
            "KUBEMINT_REQUEST_READ_TIMEOUT": str(READ_TIMEOUT),
            "KUBEMINT_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            "KUBEMINT_AUTH_FAILURES_PER_SOURCE": "100000",
        },
    )
    process.start()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", process)
        yield RunningServer(f"http://127.0.0.1:{port}", process)
    finally:
        process.stop()


class Slowloris:
    """`count` connections that send a request line, then one header byte per `every` s,
    never finishing; records when the server closed each (or None while open)."""

    def __init__(self, port: int, count: int, every: float = 0.5) -> None:
        self.port, self.every = port, every
        self.opened: list[float] = []
        self.closed: list[float | None] = []
        self.answers: list[bytes] = []
        self._socks: list[socket.socket] = []
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        for index in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sock.setblocking(False)
            self._socks.append(sock)
            self.opened.append(time.monotonic())
            self.closed.append(None)
            self.answers.append(b"")
            self._selector.register(sock, selectors.EVENT_READ, index)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _close(self, index: int) -> None:
        if self.closed[index] is None:
            self.closed[index] = time.monotonic()
            self._selector.unregister(self._socks[index])

    def _run(self) -> None:
        next_drip = time.monotonic()
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                index = key.data
                try:
                    data = self._socks[index].recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                self.answers[index] += data
                if not data:
                    self._close(index)
            if time.monotonic() >= next_drip:
                next_drip += self.every
                for index, sock in enumerate(self._socks):
                    if self.closed[index] is None:
                        try:
                            sock.send(b"a")
                        except OSError:
                            self._close(index)

    def open_count(self) -> int:
        return sum(1 for c in self.closed if c is None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self._socks:
            sock.close()


def _issue(server: RunningServer, calendar: CalendarClient) -> httpx.Response:
    # A fresh connection, and a client timeout: a hang fails the test instead of stalling it.
    with httpx.Client(timeout=5, trust_env=False) as http:
        return http.post(
            server.token_url,
            data={"grant_type": "client_credentials", "scope": "event.view"},
            auth=(calendar.credentials["client-id"], calendar.credentials["client-secret"]),
        )


def test_slow_header_connections_are_closed_at_the_read_deadline(
    guarded: RunningServer, calendar: CalendarClient
) -> None:
    port = int(guarded.issuer.rsplit(":", 1)[1])
    attack = Slowloris(port, SLOW)
    try:
        # Meanwhile an ordinary client is served (on a connection of its own).
        during = _issue(guarded, calendar)
        assert during.status_code == 200, during.text
        assert attack.open_count() > SLOW / 2  # the attack was really under way
        margin = 3.0
        deadline = max(attack.opened) + READ_TIMEOUT + margin
        while attack.open_count() and time.monotonic() < deadline:
            time.sleep(0.1)
        still_open = attack.open_count()
        assert still_open == 0, f"{still_open} of {SLOW} slow connections still open"
        lifetimes = [c - o for c, o in zip(attack.closed, attack.opened, strict=True) if c]
        assert max(lifetimes) <= READ_TIMEOUT + margin
        assert min(lifetimes) >= READ_TIMEOUT - 0.5  # the deadline, not an early refusal
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in attack.answers), attack.answers[0]
    finally:
        attack.stop()
    assert _issue(guarded, calendar).status_code == 200
    assert "Traceback" not in guarded.log()


def test_connections_beyond_the_cap_are_refused_with_503_until_slots_free(
    guarded: RunningServer, calendar: CalendarClient
) -> None:
    port = int(guarded.issuer.rsplit(":", 1)[1])
    attack = Slowloris(port, MAX_CONNECTIONS)
    try:
        over = _issue(guarded, calendar)
        assert over.status_code == 503, over.text
        assert over.json()["error"] == "temporarily_unavailable"
        assert over.headers["Retry-After"] == "1"
        # The deadline frees the slots; the client retrying is served.
        deadline = time.monotonic() + READ_TIMEOUT + 5
        while attack.open_count() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert attack.open_count() == 0
    finally:
        attack.stop()
    assert _issue(guarded, calendar).status_code == 200


def test_oversized_headers_get_431(guarded: RunningServer) -> None:
    port = int(guarded.issuer.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        try:
            for _ in range(64):  # 64 x 1 KiB: twice the default 32 KiB cap
                sock.sendall(b"X-Pad: " + b"a" * 1024 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the last header: read the answer
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    with httpx.Client(timeout=5, trust_env=False) as http:
        assert http.get(guarded.issuer + "/healthz").json() == {"status": "ok"}
