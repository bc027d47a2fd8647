"""The token endpoint's CPU per request in process, through uvicorn's own HTTP protocol.

`make bench-token` measures over real sockets on a shared machine, where neighbours move
every figure. This one needs no control plane and no sockets: it feeds raw HTTP/1.1 requests
to the very protocol objects uvicorn would create for a connection (kubemint's
`GuardedHttpProtocol` under `CloseWhileDraining`, and the bare baseline's plain httptools
protocol), one request at a time on one kept-alive connection, and counts the thread's CPU
time per request. Both apps run in rounds side by side, so both see the same neighbours;
the ratio bare/kubemint (of CPU per request) is what the token endpoint's throughput ratio
would be on a CPU-bound server.

kubemint runs as deployed: audit lines at INFO (to a file), Prometheus metrics, the CEL
sandbox with its worker processes, an AccessRule with a `when`, `client_secret_basic`.

    python -m bench.hotpath                       # ES256 and RS256, medians of 5 rounds
    python -m bench.hotpath --profile ES256       # cProfile of kubemint's ES256 requests
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import datetime
import logging
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bench import bare_token_app
from bench.scale_bench import SECRET, SERVER_NAMESPACE, record_secret
from kubemint import logs
from kubemint.api.meta import API_VERSION, KIND_CLIENT, KIND_SIGNING_KEY
from kubemint.api.records import Owner, StoredKey, encode_keys, owner_labels
from kubemint.config import ServerSettings
from kubemint.crypto import keys as key_material
from kubemint.policy import expressions
from kubemint.policy.sandbox import Sandbox
from kubemint.server.app import create_app
from kubemint.server.connections import ConnectionLimits, guarded_protocol
from kubemint.server.shutdown import CloseWhileDraining, Drain
from kubemint.store.snapshot import Snapshot, build_snapshot
from kubemint.store.view import StaticView

ISSUER = "http://127.0.0.1:8000"
AUDIENCE = "https://api.bench.example.com"
CONDITION = "request.grant_type == 'client_credentials' && request.audience.startsWith('https://')"
ALGORITHMS = {"ES256": None, "RS256": 2048}
NOW = datetime.datetime.now(datetime.UTC)
BODY = b"grant_type=client_credentials"


def _uid(kind: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/bench/{name}"))


def objects() -> dict[str, list[dict[str, Any]]]:
    """One SigningKey and one client_secret_basic client per algorithm, one AccessRule with a
    `when` granting them all (as bench.token_bench sets up on a control plane)."""
    clients, keys, secrets = [], [], []
    for alg, size in ALGORITHMS.items():
        name = alg.lower()
        key_uid = _uid(KIND_SIGNING_KEY, name)
        keys.append(
            {
                "kind": KIND_SIGNING_KEY,
                "metadata": {"namespace": SERVER_NAMESPACE, "name": name, "uid": key_uid},
                "spec": {"algorithm": alg, **({"keySize": size} if size else {})},
            }
        )
        stored = StoredKey(key_material.generate(alg, size), "active", NOW, activated_at=NOW)
        owner_secret = f"{name}-signing-keys"
        owner = Owner(KIND_SIGNING_KEY, SERVER_NAMESPACE, name, key_uid)
        secrets.append(
            {
                "kind": "Secret",
                "metadata": {
                    "namespace": SERVER_NAMESPACE,
                    "name": owner_secret,
                    "labels": owner_labels(owner, "signing-keys"),
                    "ownerReferences": [
                        {
                            "apiVersion": API_VERSION,
                            "kind": KIND_SIGNING_KEY,
                            "name": name,
                            "uid": key_uid,
                            "controller": True,
                        }
                    ],
                },
                "data": {
                    k: base64.b64encode(v.encode()).decode()
                    for k, v in encode_keys([stored]).items()
                },
            }
        )
        client_uid = _uid(KIND_CLIENT, name)
        clients.append(
            {
                "kind": KIND_CLIENT,
                "metadata": {
                    "namespace": "bench-clients",
                    "name": name,
                    "uid": client_uid,
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                },
                "spec": {
                    "audiences": [AUDIENCE],
                    "scopes": ["read", "write"],
                    "authMethod": "client_secret_basic",
                    "signingKey": name,
                },
            }
        )
        secrets.append(record_secret(KIND_CLIENT, "bench-clients", name, client_uid))
    rule = {
        "kind": "AccessRule",
        "metadata": {
            "namespace": "bench-api",
            "name": "bench",
            "uid": _uid("AccessRule", "bench"),
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "audience": AUDIENCE,
            "scopes": ["read", "write"],
            "subjects": [
                {"kind": KIND_CLIENT, "namespace": "bench-clients", "name": n.lower()}
                for n in ALGORITHMS
            ],
            "when": CONDITION,
        },
    }
    return {"clients": clients, "rules": [rule], "keys": keys, "secrets": secrets, "accounts": []}


class ChurningView(StaticView):
    """The bench's objects plus `clients` synthetic ones (bench.scale_bench's, with rules and
    accounts), kept by the incremental builder as the token server's view does; `churn()`
    changes `rate` clients per second from a thread, each body parsed from JSON first (as a
    watch event is)."""

    def __init__(self, clients: int) -> None:
        from bench.scale_bench import Options as ScaleOptions
        from bench.scale_bench import _synthetic
        from kubemint.store.builder import SnapshotBuilder, full_changes

        scale = ScaleOptions(
            clients=clients,
            namespaces=max(1, clients // 100),
            rules=max(1, clients // 20),
            accounts=clients // 10,
            rounds=1,
            duration=1,
            connections=1,
            churn=0.0,
            changes=0,
            rest_seconds=0,
            micro_changes=0,
            micro_only=True,
            skip_micro=False,
            loadgen="python",
            log_dir=None,
        )
        synthetic = _synthetic(scale) if clients else {}
        own = objects()
        self.builder = SnapshotBuilder(SERVER_NAMESPACE)
        for kind in ("secrets", "clients", "accounts", "rules", "keys"):
            bodies = own.get(kind, []) + synthetic.get(kind, [])
            self.builder.apply(kind, full_changes(bodies))
        self.bodies = synthetic.get("clients", [])
        super().__init__(self.builder.snapshot())
        self._current = self._snapshot
        self.changes = 0

    def snapshot(self) -> Snapshot:
        return self._current

    def churn(self, rate: float, halt: Any) -> None:
        import json
        import random

        from kubemint.store.informer import Changes, key_of

        rng = random.Random(7)  # noqa: S311 — which client changes
        version = 10**8
        while not halt.wait(1 / rate):
            version += 1
            raw = json.dumps(rng.choice(self.bodies))
            body = json.loads(raw)  # the watch thread parses each event
            body["metadata"]["resourceVersion"] = str(version)
            body["spec"]["scopes"] = ["read"] if version % 2 else ["read", "write"]
            self.builder.apply("clients", Changes(False, {key_of(body): body}))
            self._current = self.builder.snapshot()
            self.changes += 1


def snapshot() -> Snapshot:
    own = objects()
    built = build_snapshot(
        server_namespace=SERVER_NAMESPACE,
        clients=own["clients"],
        accounts=[],
        rules=own["rules"],
        signing_keys=own["keys"],
        secrets=own["secrets"],
    )
    missing = [a for a in ALGORITHMS if a.lower() not in built.keys or not built.clients]
    if missing:
        raise RuntimeError(f"the snapshot lacks keys or clients for {missing}")
    return built


class _Transport(asyncio.Transport):
    """What a protocol needs of a socket's transport; keeps what is written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Connection:
    """One kept-alive connection to an ASGI app through a uvicorn protocol class."""

    def __init__(self, app: Any, protocol: type[HttpToolsProtocol], request: bytes) -> None:
        config = Config(
            app, http=protocol, log_level="warning", access_log=False, proxy_headers=False
        )
        config.load()
        self.protocol = protocol(config=config, server_state=ServerState(), app_state={})
        self.transport = _Transport()
        self.protocol.connection_made(self.transport)
        self.request = request

    async def send(self) -> bytes:
        self.transport.written.clear()
        self.protocol.data_received(self.request)
        tasks = list(self.protocol.tasks)
        if tasks:
            await asyncio.gather(*tasks)
        return bytes(self.transport.written)

    def close(self) -> None:
        self.protocol.connection_lost(None)


def _request(path: str, authorization: str | None) -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1:8000",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {len(BODY)}",
    ]
    if authorization:
        head.append(f"Authorization: {authorization}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + BODY


def _check(answer: bytes, label: str) -> None:
    if not answer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{label}: not a 200: {answer[:300]!r}")


async def cpu_per_request(connection: Connection, requests: int, label: str) -> float:
    """Thread CPU microseconds per request over `requests` sequential requests."""
    _check(await connection.send(), label)
    started = time.thread_time()
    for _ in range(requests):
        await connection.send()
    spent = time.thread_time() - started
    _check(await connection.send(), label)
    return spent / requests * 1e6


# Conditions are evaluated as in the server: worker processes, answers cached (main starts it).
SANDBOX = Sandbox(workers=1)


def kubemint_app(view: StaticView) -> Any:
    """The token server's app as `kubemint token-server` wraps it (limiter lifted: all load
    comes from one address)."""
    settings = ServerSettings(
        namespace=SERVER_NAMESPACE, issuer=ISSUER, failures_per_source=1_000_000
    )
    return CloseWhileDraining(create_app(settings, view, conditions=SANDBOX), Drain())


class GcPauses:
    """Collections while installed (gc.callbacks): count and pause milliseconds per generation."""

    def __init__(self) -> None:
        import gc

        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0
        self._gc = gc

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append((time.perf_counter() - self._started) * 1e3)

    def __enter__(self) -> GcPauses:
        self._gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._gc.callbacks.remove(self)

    def describe(self) -> str:
        return ", ".join(
            f"gen{g} {len(p)}x max {max(p, default=0):.1f} ms sum {sum(p):.0f} ms"
            for g, p in self.pauses.items()
        )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def latency(options: argparse.Namespace) -> int:
    """Closed-loop load from `--connections` connections at once for `--duration` seconds on
    a view of `--clients` clients, `--churn` of them changing per second: latency per request
    as wrk reports it, and the collector's pauses meanwhile."""
    import gc
    import threading

    view = ChurningView(options.clients)
    if options.freeze:
        gc.collect()
        gc.freeze()
    app = kubemint_app(view)
    alg = options.algorithms[0]
    authorization = (
        "Basic " + base64.b64encode(f"bench-clients.{alg.lower()}:{SECRET}".encode()).decode()
    )
    request = _request("/oauth2/token", authorization)
    protocol = guarded_protocol(ConnectionLimits())
    connections = [Connection(app, protocol, request) for _ in range(options.connections)]
    for connection in connections:
        _check(await connection.send(), "warm-up")
    halt = threading.Event()
    churn = None
    if options.churn > 0:
        churn = threading.Thread(target=view.churn, args=(options.churn, halt), daemon=True)
    times: list[float] = []
    deadline = time.perf_counter() + options.duration

    async def loop(connection: Connection) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            answer = await connection.send()
            times.append((time.perf_counter() - started) * 1e3)
            if not answer.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(answer[:200])

    cpu = time.process_time()
    with GcPauses() as pauses:
        if churn is not None:
            churn.start()
        began = time.perf_counter()
        await asyncio.gather(*(loop(c) for c in connections))
        elapsed = time.perf_counter() - began
        halt.set()
    cpu = time.process_time() - cpu
    print(
        f"{options.clients} clients, churn {options.churn}/s ({view.changes} changes), "
        f"{options.connections} connections, freeze={options.freeze}: {len(times) / elapsed:.0f}"
        f" req/s, p50 {_pct(times, 0.5):.1f} ms, p99 {_pct(times, 0.99):.1f} ms, max "
        f"{max(times):.1f} ms, {cpu / len(times) * 1e6:.0f} µs CPU/request; gc: "
        + pauses.describe()
        + f"; objects tracked {len(gc.get_objects())}, frozen {gc.get_freeze_count()}",
        flush=True,
    )
    return 0


async def run(options: argparse.Namespace) -> int:
    if options.duration:
        return await latency(options)
    app = kubemint_app(StaticView(snapshot()))
    limits = ConnectionLimits()
    connections: dict[str, Connection] = {}
    for alg in options.algorithms:
        name = alg.lower()
        authorization = (
            "Basic " + base64.b64encode(f"bench-clients.{name}:{SECRET}".encode()).decode()
        )
        connections[f"bare {alg}"] = Connection(
            bare_token_app.app, HttpToolsProtocol, _request(f"/token/{alg}", None)
        )
        connections[f"kubemint {alg}"] = Connection(
            app,
            guarded_protocol(limits),
            _request("/oauth2/token", authorization),
        )
    if options.spin:  # for a sampling profiler: `py-spy record -- python -m bench.hotpath …`
        for _ in range(options.requests):
            await connections[options.spin].send()
        return 0
    if options.profile:
        label = f"kubemint {options.profile}"
        for _ in range(200):
            await connections[label].send()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(options.requests):
            await connections[label].send()
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats(options.sort).print_stats(options.top)
        return 0
    results: dict[str, list[float]] = {label: [] for label in connections}
    for _ in range(options.warmup):
        for connection in connections.values():
            await connection.send()
    for number in range(1, options.rounds + 1):
        line = []
        for label, connection in connections.items():
            us = await cpu_per_request(connection, options.requests, label)
            results[label].append(us)
            line.append(f"{label} {us:.0f}")
        print(f"round {number}: µs CPU/request: " + ", ".join(line), flush=True)
    print("medians (µs of CPU per request; ratio = bare/kubemint, as tokens/s on one CPU):")
    for alg in options.algorithms:
        bare = statistics.median(results[f"bare {alg}"])
        ours = statistics.median(results[f"kubemint {alg}"])
        pairs = zip(results[f"bare {alg}"], results[f"kubemint {alg}"], strict=True)
        ratios = [b / k for b, k in pairs]
        print(
            f"  {alg}: bare {bare:.0f}, kubemint {ours:.0f}, ratio {bare / ours:.2f} "
            f"(per round {min(ratios):.2f}-{max(ratios):.2f})"
        )
    for connection in connections.values():
        connection.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--algorithms", default="ES256,RS256")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000, help="per app per round")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--profile", choices=list(ALGORITHMS), help="cProfile kubemint's path")
    parser.add_argument("--spin", help="only load this one (e.g. 'kubemint ES256'), for py-spy")
    parser.add_argument("--duration", type=float, default=0, help="latency mode: seconds")
    parser.add_argument("--connections", type=int, default=32, help="latency mode")
    parser.add_argument("--clients", type=int, default=0, help="latency mode: view size")
    parser.add_argument("--churn", type=float, default=0, help="latency mode: changes/s")
    parser.add_argument("--freeze", action="store_true", help="latency mode: gc.freeze()")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (with --profile)")
    parser.add_argument("--top", type=int, default=40, help="rows shown (with --profile)")
    options = parser.parse_args(argv)
    options.algorithms = [a.strip() for a in options.algorithms.split(",") if a.strip()]
    with tempfile.TemporaryDirectory(prefix="kubemint-hotpath-") as tmp:
        audit = open(Path(tmp) / "audit.log", "w")  # noqa: SIM115 — closed below
        logs.configure(stream=audit)
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        SANDBOX.start()
        previous = expressions.install(SANDBOX)
        try:
            import uvloop

            return uvloop.run(run(options))
        except ImportError:
            return asyncio.run(run(options))
        finally:
            expressions.install(previous)
            SANDBOX.stop()
            audit.close()


if __name__ == "__main__":
    sys.exit(main())
