"""Scale benchmark: the token server's view at 10,000 clients (issue 10, "Scale").

Two parts, one command (`make bench-scale`, or `python -m bench.scale_bench --help`):

1. Rebuild work, in this process on synthetic objects (no cluster): `build_snapshot` of
   everything (what every change cost before the view was incremental) against one change
   fed to a `SnapshotBuilder` that holds everything (a client's spec, a client's record
   Secret, an AccessRule's `when`, a ServiceAccount), median and p99 of many changes. Run with
   `--micro-only` against an older tree (PYTHONPATH=<tree>/operator) it measures that
   tree's full build alone, for the old/new ratio. Then the view's memory (tracemalloc: the
   builder and its snapshot, fed each object parsed from JSON of its own), per client.

2. The real thing: a local control plane (etcd + kube-apiserver + controller-manager, the
   devcluster harness the tests and the other benchmarks use), N OAuth2Clients over K
   namespaces, R AccessRules with a `when` each (all different, so nothing is shared), A
   kubemint ServiceAccounts, and a real `kubemint token-server` process (one uvicorn worker,
   as deployed). Objects are written straight to the API server with the encoders the
   operator writes with (kubemint.api.records): the verification record of every client
   and account, and the default SigningKey's key Secret. The operator is not run for this
   part: making 10,000 clients Ready is what `bench.operator_bench --clients 10000` measures
   (run after this by `make bench-scale`), and an operator reconciling meanwhile would
   change what is measured here (its status writes are changes too). Measured:

   - view update after one change: a "canary" client is disabled and enabled again, one
     change at a time; end to end is from sending the PATCH until the token endpoint's
     answer for the canary flips (polled every few ms), rebuild work is the server's own
     figure for that update (`kubemint_view_last_update_work_seconds` in /metrics);
   - token p50/p99 and throughput of `client_credentials` for one client at C connections
     (wrk, as bench.token_bench; its Python load generator when wrk is missing), idle and
     while a thread PATCHes random other clients at --churn changes per second; rounds
     alternate idle and churn runs, and the churn runs' ratio to the idle ones is paired;
   - token-server RSS per client: VmRSS after the population is in the view minus VmRSS
     with only the probe clients, divided by N (accounts and rules ride along);
   - API-server requests the token server makes per minute at rest: its kubeconfig points at
     a small TLS proxy in this process that counts HTTP requests (list, watch, JWKS, …)
     on their way to the API server, over --rest-seconds with nothing changing.

Targets (issue 10): one change at 10,000 clients <= 20 ms of rebuild work (median) and
<= 1 s end to end; token p99 <= 25 ms at 32 connections with 10 changes/s, throughput within
10 % of idle; <= 2 KB RSS per client. These machines are small, shared and noisy: figures
are medians of rounds, and the report says how busy the rest of the machine was.

Exit status: 0 when the run completed (also when a target was missed: this is a measurement),
1 when it failed (an object not accepted, no token, non-2xx answers, a process died), 130 on
Ctrl-C. Every process started here is stopped in `finally` blocks.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import gc
import http.client
import json
import random
import re
import select
import shutil
import signal
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.token_bench import (
    BenchError,
    LoadResult,
    Target,
    http_request,
    load,
    machine_busy_seconds,
    running,
)
from bench.token_bench import Options as LoadOptions
from kubemint.api.meta import API_VERSION, KIND_ACCOUNT, KIND_CLIENT, KIND_SIGNING_KEY
from kubemint.api.records import (
    AccountRecord,
    ClientRecord,
    Generation,
    Owner,
    StoredKey,
    encode,
    encode_keys,
    owner_labels,
    record_name,
    record_role,
)
from kubemint.crypto import keys as key_material
from kubemint.crypto.secrets import digest
from kubemint.devcluster import ControlPlane, ControlPlaneError, layout, resolve_binaries
from kubemint.devcluster.components import metrics_url, token_server_process, wait_for_http
from kubemint.devcluster.controlplane import free_port

SERVER_NAMESPACE = "kubemint-system"
SECRET = "bench-secret-0123456789"  # noqa: S105 (a test credential)
# (every client and account has it, so the bench can ask for any token)
CONDITION = (
    "request.grant_type == 'client_credentials' && request.audience.startsWith('https://')"
    " && request.audience != 'https://not-{n}.example.com'"
)
PROBE, CANARY = "probe", "canary"
NOW_DT = datetime.datetime.now(datetime.UTC)
NOW = NOW_DT.strftime("%Y-%m-%dT%H:%M:%SZ")

TARGET_WORK_MS = 20.0
TARGET_END_TO_END_S = 1.0
TARGET_P99_MS = 25.0
TARGET_THROUGHPUT_RATIO = 0.90
TARGET_BYTES_PER_CLIENT = 2048
FULL_GC = 'python_gc_collections_total{generation="2"}'
ISSUE_FULL_BUILD_MS = 574.0  # the issue's figure: build_snapshot, 10,000 clients + 500 rules


@dataclass(frozen=True)
class Options:
    clients: int
    namespaces: int
    rules: int
    accounts: int
    rounds: int
    duration: int
    connections: int
    churn: float
    changes: int
    rest_seconds: int
    micro_changes: int
    micro_only: bool
    skip_micro: bool
    loadgen: str
    log_dir: Path | None


# -- objects (shared by both parts) -------------------------------------------------------------


def namespace(i: int, options: Options) -> str:
    return f"bench-{i % options.namespaces:03d}"


def audience(j: int) -> str:
    return f"https://api-{j}.bench.example.com"


def client_spec(i: int, options: Options) -> dict[str, Any]:
    return {
        "audiences": [audience(i % max(options.rules, 1))],
        "scopes": ["read", "write"],
        "authMethod": "client_secret_basic",
        "tokenLifetime": "15m",
        "secret": {"rotateEvery": "720h", "overlap": "1h"},
    }


def client_doc(i: int, options: Options, name: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_CLIENT,
        "metadata": {"name": name or f"client-{i:05d}", "namespace": namespace(i, options)},
        "spec": client_spec(i, options),
    }


def rule_doc(j: int, options: Options) -> dict[str, Any]:
    ns = namespace(j, options)
    return {
        "apiVersion": API_VERSION,
        "kind": "AccessRule",
        "metadata": {"name": f"rule-{j:04d}", "namespace": ns},
        "spec": {
            "audience": audience(j),
            "subjects": [{"kind": KIND_CLIENT, "namespace": ns, "name": f"client-{j:05d}"}],
            "scopes": ["read", "write"],
            "when": CONDITION.format(n=j),
            "http": [{"paths": ["/api"], "methods": ["GET"], "scopes": ["read"]}],
        },
    }


def account_doc(k: int, options: Options) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceAccount",
        "metadata": {"name": f"account-{k:04d}", "namespace": namespace(k, options)},
        "spec": {"clients": [f"client-{k:05d}"]},
    }


def _b64(text: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in text.items()}


def record_secret(kind: str, ns: str, name: str, uid: str) -> dict[str, Any]:
    """The verification record the operator would write for this object (same encoder)."""
    owner = Owner(kind, ns, name, uid)
    generation = (Generation(digest(SECRET), NOW_DT),)
    record: ClientRecord | AccountRecord
    if kind == KIND_CLIENT:
        record = ClientRecord(owner, f"{ns}.{name}", "client_secret_basic", generation)
    else:
        record = AccountRecord(owner, f"kubemint:serviceaccount:{ns}:{name}", name, generation, {})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "namespace": SERVER_NAMESPACE,
            "name": record_name(kind, uid),
            "labels": owner_labels(owner, record_role(kind)),
        },
        "data": _b64(encode(record)),
    }


def keys_secret(uid: str, stored: StoredKey) -> dict[str, Any]:
    owner = Owner(KIND_SIGNING_KEY, SERVER_NAMESPACE, "default", uid)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "namespace": SERVER_NAMESPACE,
            "name": "default-signing-keys",
            "labels": owner_labels(owner, "signing-keys"),
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND_SIGNING_KEY,
                    "name": "default",
                    "uid": uid,
                    "controller": True,
                }
            ],
        },
        "data": _b64(encode_keys([stored])),
    }


# -- part 1: rebuild work on synthetic objects -------------------------------------------------


def _synthetic(options: Options) -> dict[str, list[dict[str, Any]]]:
    """The objects as the informers would hold them (with uid and resourceVersion)."""
    version = iter(range(1, 10**9))

    def meta(doc: dict[str, Any]) -> dict[str, Any]:
        m = doc["metadata"]
        m["uid"] = str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{doc['kind']}/{m['namespace']}/{m['name']}")
        )
        m["creationTimestamp"] = NOW
        m["resourceVersion"] = str(next(version))
        return doc

    clients = [meta(client_doc(i, options)) for i in range(options.clients)]
    rules = [meta(rule_doc(j, options)) for j in range(options.rules)]
    accounts = [meta(account_doc(k, options)) for k in range(options.accounts)]
    secrets = [
        record_secret(
            d["kind"], d["metadata"]["namespace"], d["metadata"]["name"], d["metadata"]["uid"]
        )
        for d in clients + accounts
    ]
    for s in secrets:
        s["metadata"]["resourceVersion"] = str(next(version))
        s["metadata"]["uid"] = str(uuid.uuid4())
    return {"clients": clients, "rules": rules, "accounts": accounts, "secrets": secrets}


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def micro(options: Options) -> dict[str, Any]:
    """Full build vs one change, in milliseconds (medians, p99)."""
    import logging

    from kubemint.store.snapshot import build_snapshot

    logging.getLogger("kubemint").setLevel(logging.ERROR)
    objects = _synthetic(options)
    full: list[float] = []
    for _ in range(max(options.rounds, 1)):
        gc.collect()
        started = time.process_time()  # CPU time: the work, whatever else the machine runs
        build_snapshot(
            server_namespace=SERVER_NAMESPACE,
            clients=objects["clients"],
            accounts=objects["accounts"],
            rules=objects["rules"],
            signing_keys=[],
            secrets=objects["secrets"],
        )
        full.append((time.process_time() - started) * 1000)
    out: dict[str, Any] = {"full_ms": statistics.median(full), "full_runs_ms": full}
    try:
        from kubemint.store.builder import SnapshotBuilder, full_changes
        from kubemint.store.informer import Changes, key_of
    except ImportError:  # an older tree: full builds only
        return out
    builder = SnapshotBuilder(SERVER_NAMESPACE)
    for kind in ("secrets", "clients", "accounts", "rules"):
        builder.apply(kind, full_changes(objects[kind]))
    builder.snapshot()
    rng = random.Random(10)  # noqa: S311 (which object changes, not a secret)
    version = 10**8

    def changed(body: dict[str, Any]) -> dict[str, Any]:
        nonlocal version
        version += 1
        copy = json.loads(json.dumps(body))
        copy["metadata"]["resourceVersion"] = str(version)
        return copy

    def client_change() -> tuple[str, dict[str, Any]]:
        body = changed(rng.choice(objects["clients"]))
        body["spec"]["scopes"] = ["read"] if len(body["spec"]["scopes"]) > 1 else ["read", "write"]
        return "clients", body

    def record_change() -> tuple[str, dict[str, Any]]:  # a rotation: the record is new
        body = changed(rng.choice(objects["secrets"]))
        return "secrets", body

    def rule_change() -> tuple[str, dict[str, Any]]:
        body = changed(rng.choice(objects["rules"]))
        body["spec"]["when"] = CONDITION.format(n=f"changed-{version}")
        return "rules", body

    def account_change() -> tuple[str, dict[str, Any]]:
        body = changed(rng.choice(objects["accounts"]))
        body["spec"]["disabled"] = not body["spec"].get("disabled", False)
        return "accounts", body

    kinds: dict[str, Callable[[], tuple[str, dict[str, Any]]]] = {
        "client": client_change,
        "record": record_change,
        "rule": rule_change,
        "account": account_change,
    }
    work: dict[str, list[float]] = {name: [] for name in kinds}
    for n in range(options.micro_changes):
        name = list(kinds)[n % len(kinds)]
        kind, body = kinds[name]()
        started = time.process_time()
        builder.apply(kind, Changes(False, {key_of(body): body}))
        builder.snapshot()
        work[name].append((time.process_time() - started) * 1000)
    every = [w for values in work.values() for w in values]
    out["change_ms"] = statistics.median(every)
    out["change_p99_ms"] = _percentile(every, 0.99)
    out["by_kind"] = {k: (statistics.median(v), _percentile(v, 0.99)) for k, v in work.items() if v}
    del builder
    out["view_bytes"] = view_memory(objects)
    return out


def view_memory(objects: dict[str, list[dict[str, Any]]]) -> int:
    """Bytes Python allocates for the view of `objects` (tracemalloc): a builder and its
    snapshot, fed each object parsed from its own JSON (as a watch event is, so no strings
    are shared by accident), after a small warm-up build (imports, caches). The informers
    keep no copy, so this is all the token server holds for them (RSS adds the allocator's
    slack and what lives outside Python's allocator, e.g. compiled CEL)."""
    import tracemalloc

    from kubemint.store.builder import SnapshotBuilder, full_changes
    from kubemint.store.informer import slim

    texts = {kind: [json.dumps(b) for b in bodies] for kind, bodies in objects.items()}

    def build(count: int | None) -> SnapshotBuilder:
        builder = SnapshotBuilder(SERVER_NAMESPACE)
        for kind in ("secrets", "clients", "accounts", "rules"):
            builder.apply(kind, full_changes(slim(json.loads(t)) for t in texts[kind][:count]))
        builder.snapshot()
        return builder

    build(50)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build(None)
        gc.collect()
        size: int = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del kept
    return size


def describe_micro(result: dict[str, Any], options: Options) -> str:
    lines = [
        f"rebuild work on synthetic objects ({options.clients} clients, {options.rules} rules,"
        f" {options.accounts} accounts; CPU time of this process):",
        f"  full build (build_snapshot)   median {result['full_ms']:8.1f} ms"
        f"   runs {', '.join(f'{v:.0f}' for v in result['full_runs_ms'])}",
    ]
    if "change_ms" in result:
        lines.append(
            f"  one change (incremental)      median {result['change_ms']:8.2f} ms"
            f"   p99 {result['change_p99_ms']:.2f} ms"
            f"   = {result['change_ms'] / result['full_ms']:.4f} of a full build"
        )
        for kind, (median, p99) in result["by_kind"].items():
            lines.append(f"    {kind:<8} median {median:6.2f} ms   p99 {p99:6.2f} ms")
        if "view_bytes" in result:
            lines.append(
                f"  view in memory (tracemalloc)  {result['view_bytes'] / 2**20:8.1f} MiB"
                f" = {result['view_bytes'] / max(options.clients, 1):.0f} bytes per client"
                " (accounts and rules ride along)"
            )
        if options.clients == 10_000 and options.rules == 500:
            lines.append(
                "  vs the issue's 574 ms full build:"
                f" {result['change_ms'] / ISSUE_FULL_BUILD_MS:.4f}"
            )
    return "\n".join(lines)


# -- part 2 helpers: writing to the API server, counting the token server's requests ----------


class ApiWriter:
    """POST/PATCH to the API server as admin, over a few kept-alive connections."""

    def __init__(self, plane: ControlPlane) -> None:
        assert plane.pki is not None
        self.port = plane.api_port
        self._context = ssl.create_default_context(cafile=str(plane.pki.ca.cert))
        self._context.load_cert_chain(str(plane.pki.admin.cert), str(plane.pki.admin.key))
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPSConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=self._context, timeout=30
            )
            self._local.connection = connection
        return connection

    def request(
        self, method: str, path: str, body: Any, content_type: str = "application/json"
    ) -> dict[str, Any]:
        payload = json.dumps(body).encode()
        for attempt in range(5):
            connection = self._connection()
            try:
                connection.request(method, path, payload, {"Content-Type": content_type})
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                self._local.connection = None
                time.sleep(0.2 * (attempt + 1))
                continue
            if response.status == 429 or response.status >= 500:
                time.sleep(0.2 * (attempt + 1))
                continue
            if response.status >= 300:
                raise BenchError(f"{method} {path}: HTTP {response.status} {data[:300]!r}")
            result: dict[str, Any] = json.loads(data)
            return result
        raise BenchError(f"{method} {path}: the API server did not accept it")

    def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", collection(doc), doc)

    def patch(self, doc: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        path = collection(doc) + "/" + doc["metadata"]["name"]
        return self.request("PATCH", path, {"spec": spec}, "application/merge-patch+json")


def collection(doc: dict[str, Any]) -> str:
    ns = doc["metadata"]["namespace"]
    if doc["kind"] == "Secret":
        return f"/api/v1/namespaces/{ns}/secrets"
    plural = {
        KIND_CLIENT: "oauth2clients",
        "AccessRule": "accessrules",
        "ServiceAccount": "serviceaccounts",
        KIND_SIGNING_KEY: "signingkeys",
    }[doc["kind"]]
    return f"/apis/{API_VERSION}/namespaces/{ns}/{plural}"


class CountingProxy:
    """TLS in (the API server's own serving certificate), TLS out (as admin): counts the HTTP
    requests that go through, i.e. every request of the one process pointed at it."""

    REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|POST|PUT|PATCH|DELETE|HEAD) (\S+) HTTP/1\.1\r\n")

    def __init__(self, plane: ControlPlane) -> None:
        assert plane.pki is not None
        self.upstream_port = plane.api_port
        self._server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_context.load_cert_chain(
            str(plane.pki.serving.cert), str(plane.pki.serving.key)
        )
        self._client_context = ssl.create_default_context(cafile=str(plane.pki.ca.cert))
        self._client_context.load_cert_chain(str(plane.pki.admin.cert), str(plane.pki.admin.key))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.requests: list[tuple[float, str, str]] = []  # (monotonic time, method, path)
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def kubeconfig(self, plane: ControlPlane, path: Path) -> Path:
        config = yaml.safe_load(plane.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def start(self) -> None:
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()

    def stop(self) -> None:
        self._halt.set()
        self._listener.close()

    def count_since(self, since: float) -> list[tuple[float, str, str]]:
        with self._lock:
            return [r for r in self.requests if r[0] >= since]

    def _accept(self) -> None:
        while not self._halt.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            inbound = self._server_context.wrap_socket(raw, server_side=True)
            upstream = self._client_context.wrap_socket(
                socket.create_connection(("127.0.0.1", self.upstream_port)),
                server_hostname="127.0.0.1",
            )
        except (OSError, ssl.SSLError):
            raw.close()
            return
        tail = b""
        try:
            while not self._halt.is_set():
                ready, _, _ = select.select([inbound, upstream], [], [], 1.0)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is inbound:
                        seen = tail + data
                        now = time.monotonic()
                        with self._lock:
                            for match in self.REQUEST_LINE.finditer(seen):
                                if match.end() > len(tail):
                                    self.requests.append(
                                        (now, match[1].decode(), match[2].decode()[:200])
                                    )
                        tail = seen[-64:]
                        upstream.sendall(data)
                    else:
                        inbound.sendall(data)
                # TLS may hold decrypted bytes select() cannot see
                for source, sink in ((inbound, upstream), (upstream, inbound)):
                    while source.pending():
                        data = source.recv(65536)
                        if not data:
                            return
                        if source is inbound:
                            now = time.monotonic()
                            with self._lock:
                                for match in self.REQUEST_LINE.finditer(data):
                                    self.requests.append(
                                        (now, match[1].decode(), match[2].decode()[:200])
                                    )
                        sink.sendall(data)
        except (OSError, ssl.SSLError):
            return
        finally:
            inbound.close()
            upstream.close()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for {pid}")


def scrape(url: str) -> dict[str, float]:
    """The kubemint_view_* values and the collector's runs per generation
    (python_gc_collections_total) at `url` (the token server's metrics listener)."""
    status, body = http_request(url)
    if status != 200:
        raise BenchError(f"GET /metrics: HTTP {status}")
    values: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line.startswith(("kubemint_view_", "python_gc_collections_total")):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def basic(ns: str, name: str) -> str:
    return "Basic " + base64.b64encode(f"{ns}.{name}:{SECRET}".encode()).decode()


def token_status(issuer: str, authorization: str, connection: http.client.HTTPConnection) -> int:
    """The token endpoint's status for a client (on a kept-alive connection, reopened when
    the server closed it)."""
    for attempt in range(2):
        try:
            connection.request(
                "POST",
                "/oauth2/token",
                "grant_type=client_credentials",
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Authorization": authorization,
                },
            )
            response = connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            if attempt:
                raise
    raise AssertionError("unreachable")


@dataclass
class RealResult:
    populate_seconds: float = 0.0
    visible_seconds: float = 0.0
    rss_idle: int = 0
    rss_full: int = 0
    rest_requests: list[tuple[float, str, str]] = field(default_factory=list)
    rest_seconds: float = 0.0
    end_to_end: list[float] = field(default_factory=list)  # seconds
    work: list[float] = field(default_factory=list)  # seconds (server's own figure)
    idle: list[LoadResult] = field(default_factory=list)
    churn: list[LoadResult] = field(default_factory=list)
    churn_rates: list[float] = field(default_factory=list)  # changes/s achieved
    churn_updates: list[tuple[int, float]] = field(default_factory=list)  # (updates, seconds)
    others_cores: list[float] = field(default_factory=list)
    lost_rounds: list[str] = field(default_factory=list)  # load runs that failed, and why
    # full collections (generation 2) in the token server per run: (idle, churn)
    full_gcs: list[tuple[float, float]] = field(default_factory=list)


class Churn:
    """PATCHes random clients (never the probe or canary) at `rate` per second, each a real
    change of its spec (the docs keep what was last written)."""

    def __init__(self, api: ApiWriter, docs: Sequence[dict[str, Any]], rate: float) -> None:
        self.api, self.docs, self.rate = api, docs, rate
        self.done = 0
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="churn", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Churn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        rng = random.Random(7)  # noqa: S311 (which client changes)
        interval = 1.0 / self.rate
        due = time.monotonic()
        try:
            while not self._halt.is_set():
                doc = rng.choice(self.docs)
                # flip its scopes: every PATCH is a real change (an equal one is a no-op)
                spec = doc["spec"]
                spec["scopes"] = ["read"] if len(spec["scopes"]) > 1 else ["read", "write"]
                self.api.patch(doc, {"scopes": spec["scopes"]})
                self.done += 1
                due += interval
                self._halt.wait(max(0.0, due - time.monotonic()))
        except BaseException as exc:  # reported by the caller
            self.error = exc


def populate(api: ApiWriter, options: Options) -> list[dict[str, Any]]:
    """The clients, their records, the rules, the accounts and theirs; the client docs."""
    docs = [client_doc(i, options) for i in range(options.clients)]

    def client_and_record(doc: dict[str, Any]) -> None:
        created = api.create(doc)
        meta = created["metadata"]
        api.create(record_secret(KIND_CLIENT, meta["namespace"], meta["name"], meta["uid"]))

    def account_and_record(k: int) -> None:
        created = api.create(account_doc(k, options))
        meta = created["metadata"]
        api.create(record_secret(KIND_ACCOUNT, meta["namespace"], meta["name"], meta["uid"]))

    with ThreadPoolExecutor(max_workers=6) as pool:
        for future in [pool.submit(client_and_record, d) for d in docs]:
            future.result()
        for future in [pool.submit(api.create, rule_doc(j, options)) for j in range(options.rules)]:
            future.result()
        for future in [pool.submit(account_and_record, k) for k in range(options.accounts)]:
            future.result()
    return docs


def wait_until(what: str, ready: Callable[[], bool], timeout: float, server: Any) -> float:
    started = time.monotonic()
    while not ready():
        if not server.alive():
            raise BenchError(f"the token server exited:\n{server.log_tail()}")
        if time.monotonic() - started > timeout:
            raise BenchError(f"{what}: not within {timeout:.0f}s\n{server.log_tail()}")
        time.sleep(0.05)
    return time.monotonic() - started


def settle(metrics: str, quiet: float = 2.0, timeout: float = 600) -> None:
    """Until the view has had no update for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = scrape(metrics).get("kubemint_view_updates_total"), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = scrape(metrics).get("kubemint_view_updates_total")
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise BenchError("the view kept updating")


def run_real(options: Options, log_dir: Path) -> RealResult:
    result = RealResult()
    with ControlPlane(resolve_binaries(), crd_paths=[layout.crds_dir()]) as plane:
        names = sorted(
            {SERVER_NAMESPACE} | {namespace(i, options) for i in range(options.namespaces)}
        )
        plane.kubectl(
            "apply",
            "--server-side",
            "-f",
            "-",
            stdin=yaml.safe_dump_all(
                [
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
                    for n in sorted(names)
                ]
            ),
        )
        api = ApiWriter(plane)
        signing = api.create(
            {
                "apiVersion": API_VERSION,
                "kind": KIND_SIGNING_KEY,
                "metadata": {"name": "default", "namespace": SERVER_NAMESPACE},
                "spec": {"algorithm": "ES256"},
            }
        )
        stored = StoredKey(key_material.generate("ES256"), "active", NOW_DT, activated_at=NOW_DT)
        api.create(keys_secret(signing["metadata"]["uid"], stored))
        probes = {}
        for name in (PROBE, CANARY):
            doc = client_doc(0, options, name)
            meta = api.create(doc)["metadata"]
            api.create(record_secret(KIND_CLIENT, meta["namespace"], name, meta["uid"]))
            probes[name] = doc
        grant = rule_doc(0, options)  # what lets the probe and the canary get tokens
        grant["metadata"]["name"] = "probes"
        grant["spec"]["subjects"] = [
            {"kind": KIND_CLIENT, "namespace": namespace(0, options), "name": n}
            for n in (PROBE, CANARY)
        ]
        api.create(grant)
        proxy = CountingProxy(plane)
        proxy.start()
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        server = token_server_process(
            plane,
            namespace=SERVER_NAMESPACE,
            issuer=issuer,
            port=port,
            log_dir=log_dir,
            extra_env={
                "KUBECONFIG": str(proxy.kubeconfig(plane, log_dir / "kubeconfig-proxy")),
                "KUBEMINT_AUTH_FAILURES_PER_SOURCE": "1000000",
            },
        )
        metrics = metrics_url(server)
        try:
            with running(server):
                wait_for_http(issuer + "/readyz", server, timeout=180)
                probe_auth = basic(namespace(0, options), PROBE)
                canary_auth = basic(namespace(0, options), CANARY)
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                wait_until(
                    "a token for the probe client",
                    lambda: token_status(issuer, probe_auth, connection) == 200,
                    60,
                    server,
                )
                probe = Target("token probe", issuer + "/oauth2/token", server, "POST", probe_auth)
                load_options = LoadOptions(
                    duration=options.duration,
                    connections=options.connections,
                    rounds=options.rounds,
                    threads=1,
                    jwks_duration=options.duration,
                    warmup=0,
                    algorithms=("ES256",),
                    loadgen=options.loadgen,
                    keep_operator=False,
                    log_dir=None,
                )
                load(probe, 3, load_options)  # warm up (imports, caches) before the baseline
                assert server.pid is not None
                result.rss_idle = rss_bytes(server.pid)
                print(f"idle: token server RSS {result.rss_idle / 2**20:.1f} MiB", flush=True)

                started = time.monotonic()
                docs = populate(api, options)
                result.populate_seconds = time.monotonic() - started
                last = docs[-1]["metadata"]
                last_auth = basic(last["namespace"], last["name"])
                wait_until(  # authenticated (no rule grants it a token: 400, not 401)
                    "the last client created in the view",
                    lambda: token_status(issuer, last_auth, connection) != 401,
                    600,
                    server,
                )
                result.visible_seconds = time.monotonic() - started
                settle(metrics)
                result.rss_full = rss_bytes(server.pid)
                print(
                    f"populated: {options.clients} clients + records, {options.rules} rules,"
                    f" {options.accounts} accounts + records in {result.populate_seconds:.0f}s"
                    f" (all in the view after {result.visible_seconds:.0f}s); token server RSS"
                    f" {result.rss_full / 2**20:.1f} MiB",
                    flush=True,
                )

                since = time.monotonic()
                time.sleep(options.rest_seconds)
                result.rest_requests = proxy.count_since(since)
                result.rest_seconds = time.monotonic() - since
                print(
                    f"at rest: {len(result.rest_requests)} API requests in"
                    f" {result.rest_seconds:.0f}s",
                    flush=True,
                )

                for n in range(options.changes):
                    disable = n % 2 == 0
                    before = scrape(metrics).get("kubemint_view_updates_total", 0.0)
                    sent = time.monotonic()
                    api.patch(probes[CANARY], {"disabled": disable})
                    # disabled: 400 unauthorized_client; enabled again: 200
                    while (token_status(issuer, canary_auth, connection) == 200) == disable:
                        if time.monotonic() - sent > 30:
                            raise BenchError("the canary's change did not reach the view in 30s")
                        time.sleep(0.002)
                    result.end_to_end.append(time.monotonic() - sent)
                    wait_until(
                        "the update counted",
                        lambda b=before: scrape(metrics).get("kubemint_view_updates_total", 0) > b,
                        10,
                        server,
                    )
                    result.work.append(scrape(metrics)["kubemint_view_last_update_work_seconds"])
                    time.sleep(0.2)
                print(
                    "one change: end to end median"
                    f" {statistics.median(result.end_to_end) * 1000:.0f} ms, rebuild work"
                    f" median {statistics.median(result.work) * 1000:.2f} ms",
                    flush=True,
                )

                churned = [d for d in docs if d["metadata"]["name"] not in (PROBE, CANARY)]
                for number in range(1, options.rounds + 1):
                    busy = machine_busy_seconds()
                    t0 = time.monotonic()
                    try:
                        started = scrape(metrics)
                        idle = load(probe, options.duration, load_options)
                        before = scrape(metrics)
                        with Churn(api, churned, options.churn) as churn:
                            churn_started = time.monotonic()
                            busy_churn = load(probe, options.duration, load_options)
                            rate = churn.done / (time.monotonic() - churn_started)
                    except BenchError as exc:  # e.g. timeouts on a saturated machine
                        result.lost_rounds.append(str(exc).splitlines()[0])
                        print(f"round {number}: not measured: {result.lost_rounds[-1]}")
                        continue
                    if churn.error is not None:
                        raise BenchError(f"the churn thread failed: {churn.error}")
                    after = scrape(metrics)
                    result.idle.append(idle)
                    result.churn.append(busy_churn)
                    result.churn_rates.append(rate)
                    result.churn_updates.append(
                        (
                            int(
                                after["kubemint_view_updates_total"]
                                - before["kubemint_view_updates_total"]
                            ),
                            after["kubemint_view_update_work_seconds_total"]
                            - before["kubemint_view_update_work_seconds_total"],
                        )
                    )
                    result.others_cores.append(
                        max(0.0, machine_busy_seconds() - busy) / (time.monotonic() - t0)
                    )
                    result.full_gcs.append(
                        (
                            before.get(FULL_GC, 0.0) - started.get(FULL_GC, 0.0),
                            after.get(FULL_GC, 0.0) - before.get(FULL_GC, 0.0),
                        )
                    )
                    print(
                        f"round {number}: idle {idle.rps:.0f}/s p50 {idle.p50_ms:.1f} p99"
                        f" {idle.p99_ms:.1f} ms | {rate:.1f} changes/s {busy_churn.rps:.0f}/s"
                        f" p50 {busy_churn.p50_ms:.1f} p99 {busy_churn.p99_ms:.1f} ms;"
                        f" {result.churn_updates[-1][0]} view updates,"
                        f" {result.churn_updates[-1][1] * 1000:.0f} ms of work; full GCs"
                        f" idle {result.full_gcs[-1][0]:.0f}, churn {result.full_gcs[-1][1]:.0f}",
                        flush=True,
                    )
        finally:
            proxy.stop()
    return result


def summarize(result: RealResult, options: Options) -> str:
    n = options.clients
    per_client = (result.rss_full - result.rss_idle) / n if n else 0.0
    per_minute = len(result.rest_requests) * 60 / result.rest_seconds if result.rest_seconds else 0
    by_kind: dict[str, int] = {}
    for _, method, path in result.rest_requests:
        kind = "watch" if "watch=" in path else method
        by_kind[kind] = by_kind.get(kind, 0) + 1
    work_ms = [w * 1000 for w in result.work]
    e2e_ms = [e * 1000 for e in result.end_to_end]
    if not result.idle:  # every load round failed (said above): report the rest
        nan = float("nan")
        result.idle = result.churn = [LoadResult(0, 1.0, nan, nan, nan, nan, {}, 0.0, 0.0, 0.0)]
        result.churn_rates, result.churn_updates = [0.0], [(0, 0.0)]
    if not result.others_cores:
        result.others_cores = [float("nan")]
    idle_rps = statistics.median(r.rps for r in result.idle)
    churn_rps = statistics.median(r.rps for r in result.churn)
    ratios = [c.rps / i.rps for i, c in zip(result.idle, result.churn, strict=True) if i.rps]
    ratios = ratios or [float("nan")]
    churn_p99 = statistics.median(r.p99_ms for r in result.churn)
    per_update = [s / u * 1000 for u, s in result.churn_updates if u]

    def check(ok: bool) -> str:
        return "meets" if ok else "MISSES"

    lines = [
        f"summary: {n} clients over {options.namespaces} namespaces, {options.rules} rules"
        f" with `when`, {options.accounts} accounts; medians of {options.rounds} rounds;"
        f" other processes kept {statistics.median(result.others_cores):.2f} cores busy",
        f"  view update, one change ({len(work_ms)} changes):",
        f"    rebuild work  median {statistics.median(work_ms):7.2f} ms  p99"
        f" {_percentile(work_ms, 0.99):7.2f} ms   target <= {TARGET_WORK_MS:.0f} ms:"
        f" {check(statistics.median(work_ms) <= TARGET_WORK_MS)}",
        f"    end to end    median {statistics.median(e2e_ms):7.1f} ms  p99"
        f" {_percentile(e2e_ms, 0.99):7.1f} ms   target <= {TARGET_END_TO_END_S * 1000:.0f} ms:"
        f" {check(statistics.median(e2e_ms) <= TARGET_END_TO_END_S * 1000)}",
        f"  token, {options.connections} connections ({options.loadgen}):",
        f"    idle          {idle_rps:7.0f}/s  p50"
        f" {statistics.median(r.p50_ms for r in result.idle):6.2f}"
        f"  p99 {statistics.median(r.p99_ms for r in result.idle):6.2f} ms",
        f"    {statistics.median(result.churn_rates):4.1f} changes/s {churn_rps:7.0f}/s  p50"
        f" {statistics.median(r.p50_ms for r in result.churn):6.2f}  p99 {churn_p99:6.2f} ms"
        f"   target p99 <= {TARGET_P99_MS:.0f} ms: {check(churn_p99 <= TARGET_P99_MS)}",
        f"    throughput with churn / idle (paired per round): median"
        f" {statistics.median(ratios):.3f}   target >= {TARGET_THROUGHPUT_RATIO:.2f}:"
        f" {check(statistics.median(ratios) >= TARGET_THROUGHPUT_RATIO)}",
        f"    updates during churn: {statistics.median(u for u, _ in result.churn_updates):.0f}"
        f" per run, mean work {statistics.median(per_update) if per_update else 0:.2f} ms each",
        f"    full collections (gen 2) per run: idle"
        f" {statistics.median(g for g, _ in result.full_gcs or [(0, 0)]):.0f}, churn"
        f" {statistics.median(g for _, g in result.full_gcs or [(0, 0)]):.0f}",
        f"  token server RSS: idle {result.rss_idle / 2**20:.1f} MiB, with everything"
        f" {result.rss_full / 2**20:.1f} MiB: {per_client:.0f} bytes per client   target <="
        f" {TARGET_BYTES_PER_CLIENT}: {check(per_client <= TARGET_BYTES_PER_CLIENT)}",
        f"  API requests by the token server at rest: {per_minute:.1f}/min"
        f" ({', '.join(f'{k} {v}' for k, v in sorted(by_kind.items())) or 'none'} in"
        f" {result.rest_seconds:.0f}s)",
        f"  set-up: objects written in {result.populate_seconds:.0f}s, all in the view after"
        f" {result.visible_seconds:.0f}s",
    ]
    if result.lost_rounds:
        lines.append(
            f"  load rounds not measured: {len(result.lost_rounds)} ({result.lost_rounds[0]})"
        )
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale_bench",
        description="The token server's view at scale: rebuild work per change, token latency"
        " under churn, memory per client, API requests at rest (a measurement: exit 0 even"
        " when a target is missed).",
        epilog="`make bench-scale` runs this, then the operator at the same size:"
        " python -m bench.operator_bench --clients 10000 --namespaces 100 --rules 500"
        " --rounds 1 --timeout 900 (time until all are Ready, peak RSS; SCALE_OPERATOR_ARGS"
        " overrides). Smaller runs: e.g. --clients 1000 --namespaces 10 --rules 50"
        " --accounts 100 --rest-seconds 20.",
    )
    parser.add_argument("--clients", type=int, default=10_000, help="OAuth2Clients (10000)")
    parser.add_argument("--namespaces", type=int, default=100, help="client namespaces (100)")
    parser.add_argument("--rules", type=int, default=500, help="AccessRules with `when` (500)")
    parser.add_argument("--accounts", type=int, default=1_000, help="ServiceAccounts (1000)")
    parser.add_argument("--rounds", type=int, default=3, help="load rounds, idle + churn (3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run (10)")
    parser.add_argument("--connections", type=int, default=32, help="load connections (32)")
    parser.add_argument("--churn", type=float, default=10.0, help="changes per second (10)")
    parser.add_argument("--changes", type=int, default=30, help="one-change measurements (30)")
    parser.add_argument(
        "--rest-seconds", type=int, default=60, help="window counting API requests at rest (60)"
    )
    parser.add_argument(
        "--micro-changes", type=int, default=400, help="changes in the in-process part (400)"
    )
    parser.add_argument(
        "--micro-only", action="store_true", help="only the in-process part (no cluster)"
    )
    parser.add_argument("--skip-micro", action="store_true", help="skip the in-process part")
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (auto: wrk when installed)",
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the token server log")
    args = parser.parse_args(argv)
    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    return Options(
        clients=args.clients,
        namespaces=max(args.namespaces, 1),
        rules=args.rules,
        accounts=args.accounts,
        rounds=max(args.rounds, 1),
        duration=max(args.duration, 1),
        connections=args.connections,
        churn=max(args.churn, 0.1),
        changes=max(args.changes, 1),
        rest_seconds=max(args.rest_seconds, 1),
        micro_changes=max(args.micro_changes, 4),
        micro_only=args.micro_only,
        skip_micro=args.skip_micro,
        loadgen=loadgen,
        log_dir=args.log_dir,
    )


@contextlib.contextmanager
def _log_dir(options: Options) -> Iterator[Path]:
    if options.log_dir is not None:
        options.log_dir.mkdir(parents=True, exist_ok=True)
        yield options.log_dir
        return
    with tempfile.TemporaryDirectory(prefix="kubemint-scale-") as tmp:
        yield Path(tmp)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if not options.skip_micro:
            print(describe_micro(micro(options), options), flush=True)
        if options.micro_only:
            return 0
        with _log_dir(options) as log_dir:
            result = run_real(options, log_dir)
        print(summarize(result, options), flush=True)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, ControlPlaneError) as exc:
        print(f"bench-scale failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
