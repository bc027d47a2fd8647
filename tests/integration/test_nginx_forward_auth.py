"""Forward-auth through a real nginx in front of a real upstream, over real HTTP.

examples/forward-auth/nginx/nginx.conf.template is rendered as a user fills it (its `${...}`
placeholders) and run as its own nginx process on 127.0.0.1; its `auth_request` asks the real
token server, which decides from an AccessRule's spec.http, live from the cluster. The upstream
is a small echo server that records what reached it, so the tests see both what the client got
and what the API behind nginx was told.

nginx must be installed (`make nginx`, which `make test` and `make integration` run): without it
these tests fail rather than skip, as the template is documentation that must keep working.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import string
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from kubemint.devcluster.controlplane import free_port
from kubemint.devcluster.processes import ManagedProcess
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.forward_auth_setup import HOST, calendar_client
from tests.integration.kube_helpers import wait_for

TEMPLATE = Path(__file__).resolve().parents[2] / "examples/forward-auth/nginx/nginx.conf.template"
IDENTITY = ("X-Auth-Subject", "X-Auth-Client-Id", "X-Auth-Scope", "X-Auth-Audience")
LATENCY_REQUESTS = 300


# --- the upstream: echoes the identity headers it was given, records every request ----------


@dataclass(frozen=True)
class Seen:
    method: str
    target: str  # the request target as it reached the upstream
    identity: dict[str, list[str]]  # every value of each X-Auth-* header


@dataclass
class Upstream:
    url: str
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, seen: Seen) -> None:
        with self.lock:
            self.seen.append(seen)

    def take(self) -> list[Seen]:
        """What reached the upstream since the last take()."""
        with self.lock:
            taken, self.seen[:] = list(self.seen), []
            return taken


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for the direct latency baseline
    disable_nagle_algorithm = True  # headers and body are two writes
    upstream: Upstream

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        identity = {name: self.headers.get_all(name) or [] for name in IDENTITY}
        self.upstream.record(Seen(self.command, self.path, identity))
        body = json.dumps({"path": self.path, "identity": identity}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    echo = Upstream(f"http://127.0.0.1:{server.server_address[1]}")
    _Echo.upstream = echo
    thread = threading.Thread(target=server.serve_forever, name="echo-upstream", daemon=True)
    thread.start()
    try:
        yield echo
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# --- nginx, from the example template ---------------------------------------------------------


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    """The nginx executable with the auth_request module; missing means fail, never skip."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )
    if found is None:
        pytest.fail(
            "nginx is not installed (neither on PATH nor /usr/sbin/nginx): run `make nginx` "
            "(installs Debian's nginx package), or install an nginx with auth_request",
            pytrace=False,
        )
    built = subprocess.run([found, "-V"], capture_output=True, text=True, check=True, timeout=10)
    if "http_auth_request_module" not in built.stderr + built.stdout:
        pytest.fail(f"{found} lacks the auth_request module:\n{built.stderr}", pytrace=False)
    return found


class _Placeholders(string.Template):
    """`${UPPER_CASE}` only, as `envsubst '${A} ${B}'` fills them: nginx's own variables
    ($host, $request_uri, ...) stay as they are."""

    idpattern = r"(?!)"  # no bare $NAME placeholders
    braceidpattern = r"[A-Z][A-Z0-9_]*"
    flags = re.NOFLAG


def render(values: dict[str, str]) -> str:
    template = _Placeholders(TEMPLATE.read_text())
    named = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", template.template))
    assert named == set(values), f"the template's placeholders are {sorted(named)}"
    return template.safe_substitute(values)  # leaves $host etc.; every ${NAME} is filled


@dataclass
class Nginx:
    url: str
    directory: Path
    process: ManagedProcess

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_nginx(binary: str, directory: Path, values: dict[str, str], port: int) -> Nginx:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "nginx.conf"
    config.write_text(render(values))
    argv = [binary, "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log")]
    process = ManagedProcess("nginx", argv, directory / "nginx.out")
    nginx = Nginx(f"http://127.0.0.1:{port}", directory, process)
    process.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not process.alive():
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return nginx
        except OSError:
            time.sleep(0.05)
    process.stop()
    raise AssertionError(
        f"nginx did not start listening on 127.0.0.1:{port}:\n{process.log_tail()}\n"
        f"{nginx.error_log()}"
    )


# --- the calendar API behind nginx --------------------------------------------------------------


@dataclass
class Gateway:
    audience: str
    client_id: str
    token: str
    nginx: Nginx
    upstream: Upstream
    http: httpx.Client  # to nginx
    issuer: str

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        content: bytes | None = None,
        **headers: str,
    ) -> httpx.Response:
        """`method path` on calendar.example.com through nginx, with our token by default."""
        token = self.token if token is None else token
        bearer = {"Authorization": f"Bearer {token}"} if token else {}
        headers = {"Host": HOST, **bearer, **headers}
        return self.http.request(method, path, content=content, headers=headers)


@pytest.fixture
def gateway(
    nginx_binary: str,
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    upstream: Upstream,
    tmp_path: Path,
) -> Iterator[Gateway]:
    """OAuth2Client `web` (holding event.view) and an AccessRule with spec.http for this test's
    audience, and nginx, from the example template, protecting the upstream with them."""
    client = calendar_client(operator, token_server, namespace)
    audience, token = client.audience, client.token
    port = free_port()
    nginx = start_nginx(
        nginx_binary,
        tmp_path / "nginx",
        {
            "LISTEN": f"127.0.0.1:{port}",
            "SERVER_NAME": HOST,
            "UPSTREAM": upstream.url,
            "KUBEMINT_URL": token_server.issuer,
            "AUDIENCE_QUERY": urllib.parse.quote(audience, safe=""),
            "RUNTIME_DIR": str(tmp_path / "nginx"),
        },
        port,
    )
    try:
        with httpx.Client(base_url=nginx.url, timeout=10, trust_env=False) as http:
            gateway = Gateway(
                audience,
                client.credentials["client-id"],
                token,
                nginx,
                upstream,
                http,
                token_server.issuer,
            )
            wait_for(
                lambda: gateway.call("GET", "/api/events").status_code == 200,
                "nginx to let the calendar client through (the rule served by the token server)",
            )
            upstream.take()
            yield gateway
    finally:
        nginx.process.stop()
        upstream.take()


# --- the tests ------------------------------------------------------------------------------------


def test_allowed_request_reaches_the_upstream_with_the_identity(gateway: Gateway) -> None:
    response = gateway.call("GET", "/api/events?limit=5")
    assert response.status_code == 200, response.text
    (seen,) = gateway.upstream.take()
    assert (seen.method, seen.target) == ("GET", "/api/events?limit=5")
    assert seen.identity == {
        "X-Auth-Subject": [gateway.client_id],
        "X-Auth-Client-Id": [gateway.client_id],
        "X-Auth-Scope": ["event.view"],
        "X-Auth-Audience": [gateway.audience],
    }
    assert response.json()["identity"] == seen.identity


def test_client_supplied_identity_headers_are_replaced(gateway: Gateway) -> None:
    forged = {
        "X-Auth-Subject": "admin",
        "X-Auth-Client-Id": "admin",
        "X-Auth-Scope": "event.view event.create admin",
        "X-Auth-Audience": "https://elsewhere.test",
    }
    response = gateway.call("GET", "/api/events", **forged)
    assert response.status_code == 200, response.text
    (seen,) = gateway.upstream.take()
    assert seen.identity == {
        "X-Auth-Subject": [gateway.client_id],
        "X-Auth-Client-Id": [gateway.client_id],
        "X-Auth-Scope": ["event.view"],
        "X-Auth-Audience": [gateway.audience],
    }
    # Without a token the forgery gets nowhere at all.
    assert gateway.call("GET", "/api/events", token="", **forged).status_code == 401
    assert gateway.upstream.take() == []


def test_no_token_or_a_bad_one_is_401_with_the_challenge(gateway: Gateway) -> None:
    anonymous = gateway.call("GET", "/api/events", token="")
    assert anonymous.status_code == 401
    assert anonymous.headers.get_list("WWW-Authenticate") == [f'Bearer realm="{gateway.audience}"']
    tampered = gateway.token[:-4] + ("AAAA" if not gateway.token.endswith("AAAA") else "BBBB")
    bad = gateway.call("GET", "/api/events", token=tampered)
    assert bad.status_code == 401
    (challenge,) = bad.headers.get_list("WWW-Authenticate")
    assert challenge.startswith(f'Bearer realm="{gateway.audience}", error="invalid_token"')
    assert gateway.upstream.take() == []


def test_missing_scope_is_403_with_an_insufficient_scope_challenge(gateway: Gateway) -> None:
    response = gateway.call("POST", "/api/events", content=b'{"title": "standup"}')
    assert response.status_code == 403
    (challenge,) = response.headers.get_list("WWW-Authenticate")
    assert challenge.startswith(f'Bearer realm="{gateway.audience}", error="insufficient_scope"')
    assert 'scope="event.create"' in challenge
    assert gateway.upstream.take() == []


def test_uncovered_path_is_403_without_a_challenge(gateway: Gateway) -> None:
    for path in ("/api/admin", "/", "/api/events-export"):
        response = gateway.call("GET", path)
        assert response.status_code == 403, path
        assert "WWW-Authenticate" not in response.headers
    assert gateway.upstream.take() == []


def test_the_client_cannot_describe_the_request_for_nginx(gateway: Gateway) -> None:
    """The auth subrequest carries the client's headers: the template sets or clears each one
    kubemint reads, so a client cannot have another request judged in place of its own."""
    covered = {
        "X-Original-URL": f"https://{HOST}/api/events",
        "X-Original-URI": "/api/events",
        "X-Original-Method": "GET",
        "X-Forwarded-Host": HOST,
    }
    assert gateway.call("GET", "/api/admin", **covered).status_code == 403
    assert gateway.call("POST", "/api/events", **covered).status_code == 403
    assert gateway.call("GET", "/api/admin?audience=https%3A%2F%2Fother.test").status_code == 403
    assert gateway.upstream.take() == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/events/..%2Fadmin",
        # nginx passes `..;` on untouched; Tomcat, Jetty and Spring upstreams read it as `..`.
        "/api/events/..;/admin",
        "/api/events/%2e%2e;jsessionid=x/admin",
    ],
)
def test_ambiguous_path_never_reaches_the_upstream(gateway: Gateway, path: str) -> None:
    """kubemint answers 400 for a path whose meaning depends on who decodes it; auth_request
    turns any answer other than 2xx, 401 and 403 into 500 for the client (and logs it)."""
    response = gateway.call("GET", path)
    assert response.request.url.raw_path == path.encode()
    assert response.status_code == 500
    assert gateway.upstream.take() == []
    assert "auth request unexpected status: 400" in gateway.nginx.error_log()


def test_latency_through_nginx_with_auth(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """Medians of sequential requests (measured, not asserted): the upstream directly, the
    kubemint decision alone, and the upstream through nginx with auth_request."""
    with (
        httpx.Client(base_url=gateway.upstream.url, timeout=10, trust_env=False) as direct,
        httpx.Client(base_url=gateway.issuer, timeout=10, trust_env=False) as kubemint,
    ):
        decision = {
            "X-Original-Method": "GET",
            "X-Original-URI": "/api/events",
            "X-Forwarded-Host": HOST,
            "Authorization": f"Bearer {gateway.token}",
        }
        series = {
            "upstream directly": lambda: direct.get("/api/events"),
            "kubemint decision": lambda: kubemint.get(
                "/authz/auth-request", params={"audience": gateway.audience}, headers=decision
            ),
            "nginx + auth_request": lambda: gateway.call("GET", "/api/events"),
        }
        medians = {name: _timed(call) for name, call in series.items()}
    gateway.upstream.take()
    with capsys.disabled():
        print(f"\nforward-auth latency, {LATENCY_REQUESTS} sequential requests each:")
        for name, (median, p90) in medians.items():
            print(f"  {name:22} median {median * 1000:7.3f} ms   p90 {p90 * 1000:7.3f} ms")


def _timed(call: Callable[[], httpx.Response]) -> tuple[float, float]:
    for _ in range(20):  # warm-up: connections, caches
        assert call().status_code == 200
    samples = []
    for _ in range(LATENCY_REQUESTS):
        start = time.perf_counter()
        response = call()
        samples.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text
    return statistics.median(samples), statistics.quantiles(samples, n=10)[-1]
