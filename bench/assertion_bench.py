"""The cost of refusing replayed client assertions across replicas (`make bench-token` runs it).

Set-up: a local control plane, a `kubemint operator`, an ES256 SigningKey, a `private_key_jwt`
client (an ES256 key) and an AccessRule; then two real `kubemint token-server`s on the same
namespace: `shared` (the default: each accepted assertion's first use is claimed by creating
a `kubemint-jti-…` ConfigMap, kubemint.store.assertion_jtis) and `replica`
(`KUBEMINT_ASSERTION_REPLAY=replica`: in memory only). The operator is stopped before loading.

Each round, for each server: `--requests` fresh assertions (each a new `jti`, signed in
advance, outside the measurement) are POSTed by `--connections` keep-alive connections
(threads, http.client), without `client_id`, as authlib sends them. Every answer must be 200.
Reported per server: requests/s, p50/p99 latency, token server CPU per request, and the CPU
per request of kube-apiserver + etcd (where a shared claim's cost lands); then the shared
server's extra cost per assertion (p50 latency and CPU, server and API side), median of the
rounds. Last, a replay of an accepted assertion on the *other* server must be refused (401), and
one sweep (a single deleteCollection) deletes all the records written, timed.

Run `python -m bench.assertion_bench --help`. Exit 0 when every run completed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import config as kube_config

from bench.token_bench import cpu_seconds
from kubemint.crypto.client_assertions import private_key_assertion
from kubemint.devcluster import ControlPlane, layout, resolve_binaries
from kubemint.devcluster.components import (
    operator_process,
    token_server_process,
    wait_for_http,
    wait_for_leader,
)
from kubemint.devcluster.controlplane import free_port
from kubemint.devcluster.processes import ManagedProcess
from kubemint.store.assertion_jtis import SELECTOR, AssertionJtis

API = "kubemint.io/v1alpha1"
SERVER_NAMESPACE = "kubemint-system"
NAMESPACE = "bench-assertions"
AUDIENCE = "https://api.assertions.example.com"
CLIENT_ID = f"{NAMESPACE}.signer"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu: float
    api_cpu: float  # kube-apiserver + etcd

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def server_us(self) -> float:
        return self.server_cpu / self.requests * 1e6

    @property
    def api_us(self) -> float:
        return self.api_cpu / self.requests * 1e6


def manifests(public_jwk: dict[str, str]) -> str:
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
        for n in (SERVER_NAMESPACE, NAMESPACE)
    ]
    docs += [
        {
            "apiVersion": API,
            "kind": "SigningKey",
            "metadata": {"name": "default", "namespace": SERVER_NAMESPACE},
            "spec": {"algorithm": "ES256"},
        },
        {
            "apiVersion": API,
            "kind": "OAuth2Client",
            "metadata": {"name": "signer", "namespace": NAMESPACE},
            "spec": {
                "audiences": [AUDIENCE],
                "scopes": ["read"],
                "authMethod": "private_key_jwt",
                "jwks": {"keys": [public_jwk]},
            },
        },
        {
            "apiVersion": API,
            "kind": "AccessRule",
            "metadata": {"name": "bench", "namespace": NAMESPACE},
            "spec": {
                "audience": AUDIENCE,
                "subjects": [{"kind": "OAuth2Client", "name": "signer"}],
                "scopes": ["read"],
            },
        },
    ]
    # JSON, not YAML: a YAML 1.1 reader takes the EC key's `y:` for the boolean true.
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


def body(assertion: str) -> str:
    return urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
    )


def post(port: int, payload: str, connection: http.client.HTTPConnection | None = None) -> int:
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST",
        "/oauth2/token",
        payload,
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = conn.getresponse()
    response.read()
    if connection is None:
        conn.close()
    return response.status


def load(
    port: int,
    server: ManagedProcess,
    api: Sequence[ManagedProcess],
    payloads: list[str],
    connections: int,
) -> Run:
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    shares = [payloads[i::connections] for i in range(connections)]

    def worker(share: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        try:
            for payload in share:
                started = time.perf_counter()
                status = post(port, payload, conn)
                mine.append(time.perf_counter() - started)
                if status != 200:
                    with lock:
                        failures.append(status)
        finally:
            conn.close()
        with lock:
            latencies.extend(mine)

    assert server.pid is not None
    server_before = cpu_seconds(server.pid)
    api_before = sum(cpu_seconds(p.pid) for p in api if p.pid)
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise BenchError(f"{len(failures)} answers were not 200: {sorted(set(failures))}")
    latencies.sort()
    return Run(
        len(payloads),
        seconds,
        latencies[len(latencies) // 2] * 1e3,
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3,
        cpu_seconds(server.pid) - server_before,
        sum(cpu_seconds(p.pid) for p in api if p.pid) - api_before,
    )


def describe(label: str, run: Run) -> str:
    return (
        f"  {label:8} {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
        f"server {run.server_us:6.0f} µs/req  apiserver+etcd {run.api_us:6.0f} µs/req"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="assertions per run (1000)")
    parser.add_argument("--connections", type=int, default=8, help="connections (8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    options = parser.parse_args(argv)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    numbers = key.public_key().public_numbers()

    def b64(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()

    jwk = {"kty": "EC", "crv": "P-256", "x": b64(numbers.x), "y": b64(numbers.y)}
    log_dir = Path(tempfile.mkdtemp(prefix="assertion-bench-"))
    try:
        with ControlPlane(resolve_binaries(), crd_paths=[layout.crds_dir()]) as plane:
            return _bench(plane, options, pem, jwk, log_dir)
    except BenchError as exc:
        print(f"assertion bench failed: {exc} (logs in {log_dir})", file=sys.stderr)
        return 1


def _bench(
    plane: ControlPlane,
    options: argparse.Namespace,
    pem: str,
    jwk: dict[str, str],
    log_dir: Path,
) -> int:
    shared_port = free_port()
    issuer = f"http://127.0.0.1:{shared_port}"
    token_url = issuer + "/oauth2/token"
    plane.kubectl("apply", "--server-side", "-f", "-", stdin=manifests(jwk))
    operator = operator_process(
        plane, namespace=SERVER_NAMESPACE, issuer=issuer, name="op", log_dir=log_dir
    )
    # All load comes from one client on 127.0.0.1: lift the per-source failure limit and the
    # client's and its namespace's shared claims per minute (60 and 120 by default), which
    # this load would spend at once.
    env = {
        "KUBEMINT_AUTH_FAILURES_PER_SOURCE": "1000000",
        "KUBEMINT_ASSERTION_CLAIMS_PER_MINUTE": "1000000",
        "KUBEMINT_ASSERTION_NAMESPACE_CLAIMS_PER_MINUTE": "1000000",
    }
    servers = {"shared": shared_port, "replica": free_port()}
    processes = {
        mode: token_server_process(
            plane,
            namespace=SERVER_NAMESPACE,
            issuer=issuer,
            port=port,
            name=f"token-server-{mode}",
            log_dir=log_dir,
            extra_env={**env, "KUBEMINT_ASSERTION_REPLAY": mode},
        )
        for mode, port in servers.items()
    }
    api = [p for p in plane.processes if p.name in ("etcd", "kube-apiserver")]
    with contextlib.ExitStack() as stack:
        operator.start()
        stack.callback(operator.stop)
        wait_for_leader(plane, SERVER_NAMESPACE, "kubemint-operator", "op")
        for mode, process in processes.items():
            process.start()
            stack.callback(process.stop)
            wait_for_http(f"http://127.0.0.1:{servers[mode]}/readyz", process, timeout=60)
        deadline = time.monotonic() + 60
        for port in servers.values():
            while post(port, body(private_key_assertion(CLIENT_ID, pem, token_url))) != 200:
                if time.monotonic() > deadline:
                    raise BenchError("the client never got a token")
                time.sleep(0.5)
        operator.stop()
        results: dict[str, list[Run]] = {mode: [] for mode in servers}
        for number in range(1, options.rounds + 1):
            print(f"round {number}: {options.requests} fresh assertions per server", flush=True)
            for mode, port in servers.items():
                payloads = [
                    body(private_key_assertion(CLIENT_ID, pem, token_url))
                    for _ in range(options.requests)
                ]
                run = load(port, processes[mode], api, payloads, options.connections)
                results[mode].append(run)
                print(describe(mode, run), flush=True)

        def med(mode: str, attr: str) -> float:
            return float(statistics.median(getattr(r, attr) for r in results[mode]))

        print(f"medians of {options.rounds} rounds:")
        for mode in servers:
            print(
                f"  {mode:8} {med(mode, 'rps'):8.0f} req/s  p50 {med(mode, 'p50_ms'):6.2f} ms  "
                f"p99 {med(mode, 'p99_ms'):6.2f} ms  server {med(mode, 'server_us'):6.0f} µs/req"
                f"  apiserver+etcd {med(mode, 'api_us'):6.0f} µs/req"
            )
        print(
            "shared claim per assertion: "
            f"+{med('shared', 'p50_ms') - med('replica', 'p50_ms'):.2f} ms p50, "
            f"+{med('shared', 'server_us') - med('replica', 'server_us'):.0f} µs token server "
            f"CPU, +{med('shared', 'api_us') - med('replica', 'api_us'):.0f} µs apiserver+etcd "
            f"CPU; throughput shared/replica {med('shared', 'rps') / med('replica', 'rps'):.2f}"
        )
        captured = body(private_key_assertion(CLIENT_ID, pem, token_url))
        if post(servers["shared"], captured) != 200:
            raise BenchError("a fresh assertion was refused")
        replayed = post(servers["replica"], captured)  # the replica mode checks only itself
        print(f"replay on the in-memory replica: HTTP {replayed} (accepted there: no sharing)")
        second = token_server_process(
            plane,
            namespace=SERVER_NAMESPACE,
            issuer=issuer,
            port=(port := free_port()),
            name="token-server-shared-2",
            log_dir=log_dir,
            extra_env=env,
        )
        second.start()
        stack.callback(second.stop)
        wait_for_http(f"http://127.0.0.1:{port}/readyz", second, timeout=60)
        status = post(port, captured)
        print(f"replay on a second shared replica: HTTP {status}")
        if status != 401:
            raise BenchError("a replayed assertion was accepted by a second shared replica")
        client = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(plane.kubeconfig)
        )
        listed = plane.kubectl(
            "get", "configmaps", "-n", SERVER_NAMESPACE, "-l", SELECTOR, "-o", "name"
        ).stdout.split()
        store = AssertionJtis(client, SERVER_NAMESPACE, longest=3600 + 30)
        started = time.perf_counter()
        store.sweep(time.time() + 2 * 3600)
        swept = time.perf_counter() - started
        left = plane.kubectl(
            "get", "configmaps", "-n", SERVER_NAMESPACE, "-l", SELECTOR, "-o", "name"
        ).stdout.split()
        print(f"sweep: {len(listed)} records deleted in one request, {swept * 1e3:.0f} ms")
        if left:
            raise BenchError(f"{len(left)} records left after the sweep")
    return 0


if __name__ == "__main__":
    sys.exit(main())
