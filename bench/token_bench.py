"""Token endpoint benchmark: tokens/s and p50/p99 latency of `kubemint token-server` over HTTP.

Set-up (once): a local control plane, a `kubemint operator`, one SigningKey per signing
algorithm (RS256 and PS256 with 2048-bit keys, ES256, ES384, EdDSA) in the server namespace,
one OAuth2Client per algorithm (client_secret_basic, `spec.signingKey` naming that key) and
one AccessRule in the API's namespace granting them all, with a CEL `when` condition so the
policy path runs in full. The benchmark reads each client's credentials Secret, starts a real
`kubemint token-server` (one uvicorn worker, audit log at INFO into a log file, Prometheus
metrics on: exactly as deployed) and waits until every client gets a token whose signature
verifies against the server's JWKS. The operator is then stopped: the token server needs only
its watch on the API server, and an idle operator would only add noise. Also started: the bare
baseline (`bench/bare_token_app.py`: a Starlette endpoint that parses the form and signs a JWT
with joserfc, nothing else) under uvicorn with the same options.

Each round then loads, for a fixed duration and with keep-alive connections from a separate
process (wrk, one thread, `bench/token.lua`; or, when wrk is missing, this module's asyncio
load generator in a child process):

- per algorithm, POST /oauth2/token with `grant_type=client_credentials` and HTTP Basic; for
  ES256 and RS256 the bare endpoint is loaded right before kubemint, so each round gives a
  paired ratio kubemint/bare that cancels most of the machine's speed and load;
- GET /oauth2/jwks;
- POST /oauth2/introspect (RFC 7662) with `token=<an ES256 access token>` and HTTP Basic as
  the client the token was issued to. The token is obtained at set-up (a fresh one when it
  would expire during a run); before and after every run it must introspect as HTTP 200 with
  `"active": true`, since an inactive answer is a 200 too;
- GET /authz/auth-request (forward-auth, nginx convention) for an `X-Original-URL` the
  AccessRule's `spec.http` covers, with `Authorization: Bearer <that ES256 token>`; it must
  answer 200 before and after every run. The same token is presented on every request, as a
  client calling an API would, so this measures the verified-token cache's hit path.

For every run it reports requests/s, p50/p90/p99 latency (wrk's, i.e. closed-loop: the time
from sending a request to its response on a busy connection), the server's CPU time per request
(utime+stime of the server process / requests: less sensitive to neighbours than throughput),
the requests/s that CPU cost allows on one CPU the server has to itself, and how many CPUs other
processes kept busy meanwhile ("others cores": noise; these are shared 2-core machines where
client and server already compete, and other sessions' tests often run beside). A run with any
non-2xx answer or socket error makes the benchmark fail. Medians of the rounds are taken figure
by figure; the summary warns when the machine was busy.

Targets (the issue's acceptance criterion, 2-core machines, one uvicorn worker, 32
connections): ES256 >= 3,000 tokens/s with p99 < 25 ms; RS256 >= 1,800 tokens/s. The issue
measured the bare endpoint at about 6,500/s (ES256) and 2,600/s (RS256) on its machine, so the
targets are also checked as ratios to the bare endpoint (>= 0.46 and >= 0.69), which hold on
faster or slower machines too.

Run `make bench-token` or `python -m bench.token_bench --help`. Exit status: 0 when every run
completed (also when a target was missed: this is a measurement), 1 when the run failed (no
token, non-2xx answers, a server died), 130 on Ctrl-C or SIGTERM. No child process outlives
this one: all run with PR_SET_PDEATHSIG and are stopped in `finally` blocks.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from bench import profile
from kubemint.crypto.jwt import InvalidJWT, verify_jwt
from kubemint.devcluster import ControlPlane, ControlPlaneError, layout, resolve_binaries
from kubemint.devcluster.components import (
    operator_process,
    token_server_process,
    wait_for_http,
    wait_for_leader,
)
from kubemint.devcluster.controlplane import free_port
from kubemint.devcluster.processes import ManagedProcess

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LUA_SCRIPT = HERE / "token.lua"

API = "kubemint.io/v1alpha1"
SERVER_NAMESPACE = "kubemint-system"
CLIENT_NAMESPACE = "bench-clients"
API_NAMESPACE = "bench-api"
AUDIENCE = "https://api.bench.example.com"
SCOPES = ["read", "write"]
CONDITION = "request.grant_type == 'client_credentials' && request.audience.startsWith('https://')"
LEASE = "kubemint-operator"
FORM_BODY = "grant_type=client_credentials"
FORWARD_AUTH_PATH = "/api/items"

# algorithm → extra SigningKey spec
ALGORITHMS: dict[str, dict[str, Any]] = {
    "ES256": {},
    "RS256": {"keySize": 2048},
    "PS256": {"keySize": 2048},
    "ES384": {},
    "EdDSA": {},
}
BARE_ALGORITHMS = ("ES256", "RS256")  # the bare app signs these; the issue's ratios are for them

TARGET_ES256_RPS = 3000.0
TARGET_ES256_P99_MS = 25.0
TARGET_RS256_RPS = 1800.0
ISSUE_BARE_RPS = {"ES256": 6500.0, "RS256": 2600.0}  # the issue's bare figures, its machine
TARGET_RPS = {"ES256": TARGET_ES256_RPS, "RS256": TARGET_RS256_RPS}

TOKEN_MARGIN = 30.0  # seconds an introspected token must outlive a run by

NOISY_CORES = 0.25  # other processes' average CPU use above which the summary warns

_PR_SET_PDEATHSIG = 1


class BenchError(RuntimeError):
    """The run did not complete: the measurement is void."""


@dataclass(frozen=True)
class Options:
    duration: int  # whole seconds: wrk's -d takes integers
    connections: int
    rounds: int
    threads: int
    jwks_duration: int
    warmup: int
    algorithms: tuple[str, ...]
    loadgen: str  # "wrk" | "python"
    keep_operator: bool
    log_dir: Path | None
    profile: Path | None = None  # py-spy samples of each token run go here (bench.profile)


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    server_cpu: float  # CPU seconds of the server process during the run
    client_cpu: float  # CPU seconds of the load generator
    others_cpu: float  # CPU seconds of everything else on the machine
    loop_cpu: float = 0.0  # of server_cpu: its main thread's (the event loop's)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu / self.requests * 1e6 if self.requests else 0.0

    @property
    def threads_us_per_request(self) -> float:
        """Server CPU per request spent outside the event loop's thread (informers, the
        view's builder, thread pools, the metrics listener)."""
        if not self.requests:
            return 0.0
        return max(0.0, self.server_cpu - self.loop_cpu) / self.requests * 1e6

    @property
    def per_core_rps(self) -> float:
        """Requests/s the server would sustain with one CPU to itself, at this CPU cost."""
        return self.requests / self.server_cpu if self.server_cpu > 0 else 0.0

    @property
    def others_cores(self) -> float:
        """How many CPUs other processes kept busy meanwhile, on average (noise)."""
        return self.others_cpu / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Target:
    """One thing to load: a URL with its method, body and Authorization.

    `before(duration)` runs right before each load of it and `after()` right after (outside
    the measurement); either raises BenchError when the target does not answer as it should.
    """

    label: str
    url: str
    server: ManagedProcess
    method: str = "POST"
    authorization: str = ""
    body: str = FORM_BODY
    headers: tuple[tuple[str, str], ...] = ()
    before: Callable[[int], None] | None = None
    after: Callable[[], None] | None = None


@dataclass
class RoundResult:
    runs: dict[str, LoadResult] = field(default_factory=dict)  # label → result

    def ratio(self, alg: str) -> float | None:
        kubemint, bare = self.runs.get(f"kubemint {alg}"), self.runs.get(f"bare {alg}")
        if kubemint is None or bare is None or bare.rps == 0:
            return None
        return kubemint.rps / bare.rps


# -- child processes -------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Runs in a load generator child between fork and exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def run_child(argv: Sequence[str], env: dict[str, str], timeout: float) -> str:
    """Run a load generator to completion and return its stdout; never leaves it running."""
    child = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        out, _ = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    if child.returncode != 0:
        raise BenchError(f"{argv[0]} exited with {child.returncode}:\n{out[-2000:]}")
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """utime + stime of one thread of a live process (the main thread: tid == pid)."""
    try:
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    times = os.times()
    return times.children_user + times.children_system


# -- load ------------------------------------------------------------------------------------


def load(target: Target, duration: int, options: Options) -> LoadResult:
    """Load `target` for `duration` seconds from a separate process and measure."""
    pid = target.server.pid
    assert pid is not None
    if not target.server.alive():
        raise BenchError(f"{target.server.name} is not running:\n{target.server.log_tail()}")
    if target.before is not None:
        target.before(duration)
    env = {
        **os.environ,
        "BENCH_METHOD": target.method,
        "BENCH_BODY": target.body,
        "BENCH_AUTHORIZATION": target.authorization,
        "BENCH_HEADERS": "\n".join(f"{name}: {value}" for name, value in target.headers),
    }
    if options.loadgen == "wrk":
        argv = [
            "wrk",
            f"-t{options.threads}",
            f"-c{options.connections}",
            f"-d{duration:g}s",
            "--timeout",
            "5s",
            "--latency",
            "-s",
            str(LUA_SCRIPT),
            target.url,
        ]
    else:
        argv = [
            sys.executable,
            "-m",
            "bench.token_bench",
            "--loadgen-child",
            target.url,
            "--connections",
            str(options.connections),
            "--duration",
            f"{duration:g}",
        ]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    server_before, client_before = cpu_seconds(pid), children_cpu_seconds()
    loop_before = thread_cpu_seconds(pid, pid)  # uvicorn's event loop runs in the main thread
    busy_before = machine_busy_seconds()
    own_before = _own_cpu()
    out = run_child(argv, env, timeout=duration + 60)
    server_cpu = cpu_seconds(pid) - server_before
    loop_cpu = thread_cpu_seconds(pid, pid) - loop_before
    client_cpu = children_cpu_seconds() - client_before
    own = _own_cpu() - own_before
    others = max(0.0, machine_busy_seconds() - busy_before - server_cpu - client_cpu - own)
    if not target.server.alive():
        raise BenchError(f"{target.server.name} died under load:\n{target.server.log_tail()}")
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH-RESULT ")), None)
    if line is None:
        raise BenchError(f"no result from the load generator for {target.label}:\n{out[-2000:]}")
    raw = json.loads(line.removeprefix("BENCH-RESULT "))
    errors = {
        k: int(raw[k])
        for k in ("non_2xx", "connect_errors", "read_errors", "write_errors", "timeouts")
    }
    result = LoadResult(
        requests=int(raw["requests"]),
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=errors,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        others_cpu=others,
        loop_cpu=loop_cpu,
    )
    if any(errors.values()) or result.requests == 0:
        bad = ", ".join(f"{k}={v}" for k, v in errors.items() if v) or "no requests"
        raise BenchError(
            f"{target.label}: {bad} ({result.requests} requests)\n--- {target.server.name} log "
            f"ends with:\n{target.server.log_tail(10)}"
        )
    if target.after is not None:
        target.after()
    return result


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


# -- the Python fallback load generator (runs as a child process) ----------------------------


def loadgen_child(url: str, connections: int, duration: float) -> int:
    """Keep-alive HTTP/1.1 load on `connections` connections; prints a BENCH-RESULT line."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    method = os.environ.get("BENCH_METHOD", "POST")
    target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    headers = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}"]
    body = b""
    if method == "POST":
        body = os.environ.get("BENCH_BODY", FORM_BODY).encode()
        headers += [
            "Content-Type: application/x-www-form-urlencoded",
            f"Content-Length: {len(body)}",
        ]
    if os.environ.get("BENCH_AUTHORIZATION"):
        headers.append("Authorization: " + os.environ["BENCH_AUTHORIZATION"])
    headers += [line for line in os.environ.get("BENCH_HEADERS", "").split("\n") if line]
    request = ("\r\n".join(headers) + "\r\n\r\n").encode() + body
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "status": 0}
    received = 0

    async def connection(deadline: float) -> None:
        nonlocal received
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            errors["connect"] += 1
            return
        try:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                payload = await reader.readexactly(length)
                latencies.append(time.perf_counter() - sent)
                received += len(head) + len(payload)
                if not 200 <= status < 300:
                    errors["status"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors["read"] += 1
        finally:
            writer.close()

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(connection(start + duration) for _ in range(connections)))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    ordered = sorted(latencies) or [0.0]

    def pct(p: float) -> int:
        return int(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1e6)

    print(
        "BENCH-RESULT "
        + json.dumps(
            {
                "requests": len(latencies),
                "duration_us": int(elapsed * 1e6),
                "bytes": received,
                "connect_errors": errors["connect"],
                "read_errors": errors["read"],
                "write_errors": 0,
                "non_2xx": errors["status"],
                "timeouts": 0,
                "p50_us": pct(50),
                "p90_us": pct(90),
                "p99_us": pct(99),
                "max_us": int(ordered[-1] * 1e6),
                "mean_us": statistics.fmean(ordered) * 1e6,
            }
        ),
        flush=True,
    )
    return 0


# -- set-up ----------------------------------------------------------------------------------


def key_name(alg: str) -> str:
    return alg.lower()


def client_name(alg: str) -> str:
    return f"client-{alg.lower()}"


def manifests(algorithms: Sequence[str]) -> tuple[str, str]:
    """(namespaces + SigningKeys, OAuth2Clients + the AccessRule)."""
    keys: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        for ns in (SERVER_NAMESPACE, CLIENT_NAMESPACE, API_NAMESPACE)
    ]
    keys += [
        {
            "apiVersion": API,
            "kind": "SigningKey",
            "metadata": {"name": key_name(alg), "namespace": SERVER_NAMESPACE},
            "spec": {"algorithm": alg, **ALGORITHMS[alg]},
        }
        for alg in algorithms
    ]
    clients: list[dict[str, Any]] = [
        {
            "apiVersion": API,
            "kind": "OAuth2Client",
            "metadata": {"name": client_name(alg), "namespace": CLIENT_NAMESPACE},
            "spec": {
                "audiences": [AUDIENCE],
                "scopes": SCOPES,
                "authMethod": "client_secret_basic",
                "signingKey": key_name(alg),
            },
        }
        for alg in algorithms
    ]
    clients.append(
        {
            "apiVersion": API,
            "kind": "AccessRule",
            "metadata": {"name": "bench", "namespace": API_NAMESPACE},
            "spec": {
                "audience": AUDIENCE,
                "subjects": [
                    {"kind": "OAuth2Client", "namespace": CLIENT_NAMESPACE, "name": client_name(a)}
                    for a in algorithms
                ],
                "scopes": SCOPES,
                "when": CONDITION,
                "http": [{"paths": [FORWARD_AUTH_PATH], "methods": ["GET"], "scopes": SCOPES[:1]}],
            },
        }
    )
    return yaml.safe_dump_all(keys, sort_keys=False), yaml.safe_dump_all(clients, sort_keys=False)


def read_credentials(plane: ControlPlane, alg: str, timeout: float = 60) -> str:
    """The client's Basic Authorization header, once the operator has written its Secret."""
    path = f"/api/v1/namespaces/{CLIENT_NAMESPACE}/secrets/{client_name(alg)}-credentials"
    deadline = time.monotonic() + timeout
    while True:
        try:
            secret = plane.get_json(path)
            data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
            raw = f"{data['client-id']}:{data['client-secret']}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        except (urllib.error.HTTPError, KeyError):
            if time.monotonic() > deadline:
                raise BenchError(f"no credentials Secret for {client_name(alg)}") from None
            time.sleep(0.2)


def http_request(
    url: str,
    method: str = "GET",
    body: str | None = None,
    authorization: str = "",
    extra: Sequence[tuple[str, str]] = (),
) -> tuple[int, bytes]:
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=10)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
    if authorization:
        headers["Authorization"] = authorization
    headers.update(extra)
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_for_token(target: Target, alg: str, issuer: str, timeout: float = 60) -> dict[str, Any]:
    """Poll until a token comes back 200, check its signature against the JWKS, return the
    token response."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_request(target.url, "POST", target.body, target.authorization)
        if status == 200:
            break
        if not target.server.alive():
            raise BenchError(f"{target.server.name} exited:\n{target.server.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{target.label}: still HTTP {status} after {timeout:.0f}s: {body!r}")
        time.sleep(0.2)
    response = json.loads(body)
    token = response.get("access_token")
    if not token:
        raise BenchError(f"{target.label}: 200 without access_token: {body[:200]!r}")
    status, jwks = http_request(issuer + "/oauth2/jwks")
    if status != 200:
        raise BenchError(f"GET /oauth2/jwks: HTTP {status}")
    try:
        verify_jwt(
            token,
            json.loads(jwks),
            algorithms=[alg],
            issuer=issuer,
            audience=AUDIENCE,
            now=time.time(),
            typ="at+jwt",
        )
    except InvalidJWT as exc:
        raise BenchError(f"{target.label}: the token does not verify: {exc}") from None
    return dict(response)


class PresentedToken:
    """A target that presents one access token (introspection, forward-auth). Before every
    load the token must have `duration` + TOKEN_MARGIN seconds to live (else a fresh one is
    fetched from `token_target`, the same client's token endpoint) and the target must answer
    as expected; after the load it must still: an inactive introspection answer is a 200 too,
    so the load generators' status counts would miss it."""

    def __init__(
        self,
        token_target: Target,
        response: dict[str, Any],
        target: Target,
        present: Callable[[Target, str], None],
        accept: Callable[[int, bytes], bool],
        expected: str,
    ) -> None:
        self.token_target = token_target
        self.target = target
        self.target.before, self.target.after = self.before, partial(self.check, "after the load")
        self.present, self.accept, self.expected = present, accept, expected
        self.expires_at = 0.0
        self.use(response)

    def use(self, response: dict[str, Any]) -> None:
        self.present(self.target, response["access_token"])
        self.expires_at = time.time() + float(response.get("expires_in", 0))

    def before(self, duration: int) -> None:
        if time.time() + duration + TOKEN_MARGIN > self.expires_at:
            target = self.token_target
            status, body = http_request(target.url, "POST", target.body, target.authorization)
            if status != 200:
                raise BenchError(f"{target.label}: a fresh token for {self.target.label}: {status}")
            self.use(json.loads(body))
        self.check("before the load")

    def check(self, when: str) -> None:
        target = self.target
        body_or_none = target.body if target.method == "POST" else None
        status, body = http_request(
            target.url, target.method, body_or_none, target.authorization, target.headers
        )
        if not self.accept(status, body):
            raise BenchError(
                f"{target.label} {when}: HTTP {status} {body[:200]!r}, expected {self.expected}"
                f"\n--- {target.server.name} log ends with:\n{target.server.log_tail(10)}"
            )


def introspection(token_target: Target, response: dict[str, Any]) -> PresentedToken:
    """POST /oauth2/introspect of the token, authenticated (HTTP Basic) as its client."""

    def present(target: Target, token: str) -> None:
        target.body = urllib.parse.urlencode({"token": token})

    def active(status: int, body: bytes) -> bool:
        try:
            return status == 200 and json.loads(body).get("active") is True
        except (ValueError, AttributeError):
            return False

    target = Target(
        "kubemint introspect",
        token_target.url.removesuffix("/oauth2/token") + "/oauth2/introspect",
        token_target.server,
        "POST",
        token_target.authorization,
    )
    return PresentedToken(token_target, response, target, present, active, '200 "active": true')


def forward_auth(token_target: Target, response: dict[str, Any], issuer: str) -> PresentedToken:
    """GET /authz/auth-request with the token as Bearer for a request spec.http covers."""

    def present(target: Target, token: str) -> None:
        target.authorization = "Bearer " + token

    target = Target(
        "kubemint forward-auth",
        f"{issuer}/authz/auth-request?audience={urllib.parse.quote(AUDIENCE, safe='')}",
        token_target.server,
        "GET",
        body="",
        headers=(
            ("X-Original-URL", f"https://api.bench.example.com{FORWARD_AUTH_PATH}/1"),
            ("X-Original-Method", "GET"),
        ),
    )
    return PresentedToken(token_target, response, target, present, lambda s, _: s == 200, "200")


@contextlib.contextmanager
def running(process: ManagedProcess) -> Iterator[ManagedProcess]:
    process.start()
    try:
        yield process
    finally:
        process.stop()


# -- the run ---------------------------------------------------------------------------------


def run(options: Options, log_dir: Path) -> list[RoundResult]:
    key_docs, client_docs = manifests(options.algorithms)
    with ControlPlane(resolve_binaries(), crd_paths=[layout.crds_dir()]) as plane:
        started = time.monotonic()
        plane.kubectl("apply", "--server-side", "-f", "-", stdin=key_docs)
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        operator = operator_process(
            plane,
            namespace=SERVER_NAMESPACE,
            issuer=issuer,
            name="bench-operator",
            lease_name=LEASE,
            log_dir=log_dir,
        )
        server = token_server_process(
            plane,
            namespace=SERVER_NAMESPACE,
            issuer=issuer,
            port=port,
            log_dir=log_dir,
            # All load comes from 127.0.0.1: never let the failure limiter interfere.
            extra_env={"KUBEMINT_AUTH_FAILURES_PER_SOURCE": "1000000"},
        )
        bare_port = free_port()
        bare = ManagedProcess(
            "bare-token-app",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(REPO),
                "bench.bare_token_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--no-proxy-headers",
            ],
            log_dir / "bare-token-app.log",
            {**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        with contextlib.ExitStack() as stack:
            stack.enter_context(running(operator))
            wait_for_leader(plane, SERVER_NAMESPACE, LEASE, "bench-operator")
            plane.kubectl("apply", "--server-side", "-f", "-", stdin=client_docs)
            authorizations = {alg: read_credentials(plane, alg) for alg in options.algorithms}
            stack.enter_context(running(server))
            wait_for_http(issuer + "/readyz", server, timeout=60)
            targets: dict[str, Target] = {}
            tokens: dict[str, dict[str, Any]] = {}
            for alg in options.algorithms:
                target = Target(
                    f"kubemint {alg}", issuer + "/oauth2/token", server, "POST", authorizations[alg]
                )
                tokens[alg] = wait_for_token(target, alg, issuer)
                targets[target.label] = target
            # One ES256 access token (the first algorithm's when ES256 is not benchmarked),
            # introspected by the client it was issued to.
            introspected_alg = "ES256" if "ES256" in options.algorithms else options.algorithms[0]
            introspected = introspection(
                targets[f"kubemint {introspected_alg}"], tokens[introspected_alg]
            )
            introspected.check("at set-up")
            authz = forward_auth(
                targets[f"kubemint {introspected_alg}"], tokens[introspected_alg], issuer
            )
            authz.check("at set-up")
            if not options.keep_operator:
                operator.stop()
            stack.enter_context(running(bare))
            bare_url = f"http://127.0.0.1:{bare_port}"
            wait_for_http(bare_url + "/healthz", bare)
            ordered: list[Target] = []
            for alg in options.algorithms:
                if alg in BARE_ALGORITHMS:
                    ordered.append(Target(f"bare {alg}", f"{bare_url}/token/{alg}", bare))
                ordered.append(targets[f"kubemint {alg}"])
            jwks = Target("kubemint JWKS", issuer + "/oauth2/jwks", server, "GET", body="")
            ordered += [jwks, introspected.target, authz.target]
            print(
                f"set-up {time.monotonic() - started:.1f}s: tokens verified for "
                f"{', '.join(options.algorithms)}; introspection of a {introspected_alg} "
                f"token answers active; operator "
                f"{'running' if options.keep_operator else 'stopped'} during the load",
                flush=True,
            )
            if options.warmup > 0:
                for target in ordered:
                    load(target, options.warmup, options)
            results: list[RoundResult] = []
            for number in range(1, options.rounds + 1):
                result = RoundResult()
                for target in ordered:
                    duration = options.jwks_duration if target is jwks else options.duration
                    result.runs[target.label] = load(target, duration, options)
                results.append(result)
                print(describe_round(number, result, options), flush=True)
            if options.profile is not None:
                token_targets = [t for t in ordered if t.label.split()[-1] in options.algorithms]
                print(profile_runs(token_targets, options, options.profile), flush=True)
            audit = audit_lines(server.log_path)
            print(f"audit log: {audit} lines from the token server ({server.log_path.name})")
            return results


def py_spy() -> str | None:
    """The py-spy executable (`pip install py-spy`): on PATH or next to this Python."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def profile_runs(targets: Sequence[Target], options: Options, out_dir: Path) -> str:
    """One more run of each target while py-spy samples its server (at 250 Hz, without
    pausing it; threads waiting idle are not sampled), and where the time went, per part of
    the request path (bench.profile), in % of the serving thread's samples."""
    executable = py_spy()
    assert executable is not None  # parse_args checked
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = {}
    for target in targets:
        path = out_dir / (target.label.replace(" ", "-") + ".txt")
        argv = [executable, "record", "--pid", str(target.server.pid), "--nonblocking"]
        argv += ["--rate", "250", "--format", "raw"]  # until SIGINT, when the load is done
        spy = subprocess.Popen(
            [*argv, "--output", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent,
        )
        try:
            load(target, options.duration, options)
            spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled, then exits
            _, err = spy.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            raise BenchError(f"py-spy did not finish for {target.label}") from None
        finally:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
        if spy.returncode != 0 or not path.exists():
            raise BenchError(f"py-spy failed for {target.label}: {err.strip()[-500:]}")
        columns[target.label] = profile.breakdown(path.read_text().splitlines())
    return (
        f"profile (py-spy, % of the serving thread's busy samples; raw stacks in {out_dir}):\n"
        + profile.table(columns)
    )


def audit_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as log:
        for line in log:
            # A text-format record, or kubemint.logs.AuditFormatter's JSON line.
            if b" kubemint.audit " in line or b'"audit": "token"' in line:
                count += 1
    return count


# -- report ----------------------------------------------------------------------------------

COLUMNS = (
    ("rps", "req/s", 9, 0),
    ("p50_ms", "p50 ms", 8, 2),
    ("p90_ms", "p90 ms", 8, 2),
    ("p99_ms", "p99 ms", 8, 2),
    ("max_ms", "max ms", 8, 1),
    ("cpu_us_per_request", "srv CPU µs/req", 15, 0),
    ("threads_us_per_request", "not loop µs", 12, 0),
    ("per_core_rps", "req/s per core", 15, 0),
    ("others_cores", "others cores", 13, 2),
)
LABEL_WIDTH = 20
HEADER = "  " + " " * LABEL_WIDTH + "".join(f" {title:>{width}}" for _, title, width, _ in COLUMNS)


def row(label: str, value: Callable[[str], float]) -> str:
    cells = "".join(f" {value(attr):{width}.{digits}f}" for attr, _, width, digits in COLUMNS)
    return f"  {label:{LABEL_WIDTH}}{cells}"


def describe_round(number: int, result: RoundResult, options: Options) -> str:
    lines = [f"round {number}:", HEADER]
    lines += [row(label, partial(getattr, r)) for label, r in result.runs.items()]
    ratios = [
        f"{alg} {ratio:.2f}" for alg in BARE_ALGORITHMS if (ratio := result.ratio(alg)) is not None
    ]
    if ratios:
        lines.append("  kubemint/bare tokens/s: " + ", ".join(ratios))
    return "\n".join(lines)


def summarize(results: Sequence[RoundResult], options: Options) -> str:
    labels = list(results[0].runs)

    def median(label: str, attr: str) -> float:
        return float(statistics.median(getattr(r.runs[label], attr) for r in results))

    lines = [
        f"median of {len(results)} round(s), {options.connections} connections, "
        f"{options.duration:g}s per run, load generator {options.loadgen}:",
        HEADER,
    ]
    lines += [row(label, partial(median, label)) for label in labels]
    ratios: dict[str, float] = {}
    per_cpu: dict[str, float] = {}
    for alg in BARE_ALGORITHMS:
        per_round = [r for res in results if (r := res.ratio(alg)) is not None]
        if not per_round:
            continue
        ratios[alg] = statistics.median(per_round)
        cpu = statistics.median(
            res.runs[f"kubemint {alg}"].cpu_us_per_request
            / res.runs[f"bare {alg}"].cpu_us_per_request
            for res in results
        )
        per_cpu[alg] = 1 / cpu if cpu > 0 else 0.0
        lines.append(
            f"  kubemint/bare {alg}: tokens/s ratio {ratios[alg]:.2f} (median of per-round "
            f"ratios: {', '.join(f'{r:.2f}' for r in per_round)}); server CPU per token "
            f"{cpu:.2f}x the bare endpoint's, i.e. {per_cpu[alg]:.2f} of its tokens per CPU-second"
        )
    noise = statistics.median(
        r.others_cores for res in results for label, r in res.runs.items() if "kubemint" in label
    )
    if noise > NOISY_CORES:
        lines.append(
            f"note: other processes kept a median {noise:.2f} of {os.cpu_count()} CPUs busy "
            "during the kubemint runs, so the absolute figures understate this machine; the "
            "ratios to the bare endpoint, CPU per request and req/s per core compare better"
        )
    lines.append(verdict(results, ratios, per_cpu))
    return "\n".join(lines)


def verdict(
    results: Sequence[RoundResult], ratios: dict[str, float], per_cpu: dict[str, float]
) -> str:
    def med(label: str, attr: str) -> float | None:
        if label not in results[0].runs:
            return None
        return float(statistics.median(getattr(r.runs[label], attr) for r in results))

    parts = []
    es_rps, es_p99 = med("kubemint ES256", "rps"), med("kubemint ES256", "p99_ms")
    if es_rps is not None and es_p99 is not None:
        ok = es_rps >= TARGET_ES256_RPS
        parts.append(
            f"ES256 {es_rps:.0f}/s {'>=' if ok else '<'} {TARGET_ES256_RPS:.0f} "
            f"{'PASS' if ok else 'MISS'}"
        )
        ok = es_p99 < TARGET_ES256_P99_MS
        parts.append(
            f"ES256 p99 {es_p99:.1f} ms {'<' if ok else '>='} {TARGET_ES256_P99_MS:.0f} ms "
            f"{'PASS' if ok else 'MISS'}"
        )
    rs_rps = med("kubemint RS256", "rps")
    if rs_rps is not None:
        ok = rs_rps >= TARGET_RS256_RPS
        parts.append(
            f"RS256 {rs_rps:.0f}/s {'>=' if ok else '<'} {TARGET_RS256_RPS:.0f} "
            f"{'PASS' if ok else 'MISS'}"
        )
    lines = ["verdict (absolute): " + ("; ".join(parts) or "no ES256/RS256 runs")]
    for title, figures in (
        ("tokens/s relative to the bare endpoint", ratios),
        (
            "tokens per server CPU-second relative to the bare endpoint; least noise-sensitive",
            per_cpu,
        ),
    ):
        scaled = []
        for alg, ratio in figures.items():
            need = TARGET_RPS[alg] / ISSUE_BARE_RPS[alg]
            ok = ratio >= need
            scaled.append(
                f"{alg} {ratio:.2f} {'>=' if ok else '<'} {need:.2f} {'PASS' if ok else 'MISS'}"
            )
        if scaled:
            lines.append(f"verdict ({title}): " + "; ".join(scaled))
    lines.append(
        "  (relative targets = the absolute targets over the issue's bare figures, "
        f"{ISSUE_BARE_RPS['ES256']:.0f}/s ES256 and {ISSUE_BARE_RPS['RS256']:.0f}/s RS256)"
    )
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.token_bench",
        description="tokens/s and latency of the token endpoint per signing algorithm, "
        "against a bare Starlette+joserfc endpoint",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (32)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--jwks-duration", type=int, default=5, help="seconds for JWKS (5)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per target (2)")
    parser.add_argument(
        "--algorithms",
        default=",".join(ALGORITHMS),
        help=f"comma-separated signing algorithms ({','.join(ALGORITHMS)})",
    )
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="wrk, or the asyncio load generator in a child process; auto: wrk if installed",
    )
    parser.add_argument(
        "--keep-operator", action="store_true", help="keep the operator running during the load"
    )
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="keep the server logs here (default: removed)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="after the rounds, one more run per token endpoint under py-spy (pip install "
        "py-spy): where the time goes, by part of the request path; raw stacks kept in DIR",
    )
    args = parser.parse_args(argv)
    if args.profile is not None and py_spy() is None:
        parser.error("--profile needs py-spy: pip install py-spy")
    algorithms = tuple(a.strip() for a in args.algorithms.split(",") if a.strip())
    unknown = [a for a in algorithms if a not in ALGORITHMS]
    if unknown or not algorithms:
        parser.error(f"unknown algorithm(s) {unknown}; choose from {', '.join(ALGORITHMS)}")
    if args.duration < 1 or args.jwks_duration < 1 or args.warmup < 0:
        parser.error("--duration and --jwks-duration must be >= 1 s, --warmup >= 0")
    if args.connections < 1 or args.rounds < 1 or args.threads < 1:
        parser.error("--duration, --connections, --rounds and --threads must be positive")
    if args.threads > args.connections:
        parser.error("--threads must not exceed --connections")
    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    elif loadgen == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk), use --loadgen python")
    return Options(
        duration=args.duration,
        connections=args.connections,
        rounds=args.rounds,
        threads=args.threads,
        jwks_duration=args.jwks_duration,
        warmup=args.warmup,
        algorithms=algorithms,
        loadgen=loadgen,
        keep_operator=args.keep_operator,
        log_dir=args.log_dir,
        profile=args.profile,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--loadgen-child"]:
        child = argparse.ArgumentParser()
        child.add_argument("url")
        child.add_argument("--connections", type=int, default=32)
        child.add_argument("--duration", type=float, default=10)
        args = child.parse_args(argv[1:])
        return loadgen_child(args.url, args.connections, args.duration)

    options = parse_args(argv)
    # Also SIGINT: a shell starts background jobs with it ignored, and Ctrl-C must still work.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    generator = (
        f"wrk -t{options.threads} -c{options.connections} --latency -s {LUA_SCRIPT.name}"
        if options.loadgen == "wrk"
        else "Python asyncio load generator in a child process (wrk not installed: its figures "
        "may be limited by the generator itself; install wrk for comparable figures)"
    )
    print(
        f"token benchmark: {', '.join(options.algorithms)}; {options.rounds} round(s) of "
        f"{options.duration:g}s per algorithm, {options.connections} keep-alive connections; "
        f"{os.cpu_count()} CPUs; load: {generator}",
        flush=True,
    )
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="kubemint-token-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        results = run(options, log_dir)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, ControlPlaneError) as exc:
        print(f"token benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if options.log_dir is None:
            shutil.rmtree(log_dir, ignore_errors=True)
    print(summarize(results, options), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
