"""Workload helpers through a real token-server outage of minutes, measured.

Starts a local control plane, the operator and `kubemint token-server`, registers one
OAuth2Client (tokens of `--lifetime` seconds) and runs, as a pod would, a
`kubemint token --watch` sidecar (one file), a `TokenSource` polled from a thread and an
`AsyncTokenSource` polled on an event loop, every helper renewing `--renew-before` seconds
before expiry. Each round stops the token server for `--outage` seconds right after the
helpers' tokens were issued, then starts it again.

Per helper and round: the failed renewal attempts during the outage, the seconds from the
server's return (`/readyz` answering 200) to the helper's first new token (its recovery:
one retry is at most the 5 s backoff cap), and whether it ever handed out an expired token or
an error while its token was valid. Medians over rounds. Defaults: a 3-minute outage against
10-minute tokens renewed with 9 minutes left (every minute), so a renewal is due a minute
into the outage and is retried for the two minutes after.

Run `make bench-outage` (or `python -m bench.outage_bench --help`); BENCH_OUTAGE_ARGS passes
options. Exit status 0 when every round completed, 1 when one failed, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kubemint.client import AsyncTokenSource, Credentials, TokenSource
from kubemint.devcluster import ControlPlane, ControlPlaneError, layout, resolve_binaries
from kubemint.devcluster.components import (
    operator_process,
    token_server_process,
    wait_for_http,
    wait_for_leader,
)
from kubemint.devcluster.controlplane import free_port
from kubemint.devcluster.processes import ManagedProcess

SERVER_NAMESPACE = "kubemint-system"
NAMESPACE = "bench"
AUDIENCE = "https://bench.example.com"
HELPERS = ("sidecar file", "TokenSource", "AsyncTokenSource")

MANIFESTS = """\
apiVersion: kubemint.io/v1alpha1
kind: SigningKey
metadata: {{name: default, namespace: {server}}}
spec: {{algorithm: ES256}}
---
apiVersion: kubemint.io/v1alpha1
kind: OAuth2Client
metadata: {{name: app, namespace: {namespace}}}
spec: {{audiences: ["{audience}"], scopes: [read], tokenLifetime: {lifetime}s}}
---
apiVersion: kubemint.io/v1alpha1
kind: AccessRule
metadata: {{name: app, namespace: {namespace}}}
spec:
  audience: {audience}
  scopes: [read]
  subjects: [{{kind: OAuth2Client, name: app}}]
"""


def _exp(token: str) -> float:
    payload = token.split(".")[1]
    return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


@dataclass
class Trace:
    """(wall time, token or error) as an app saw them."""

    samples: list[tuple[float, str | BaseException]] = field(default_factory=list)

    def last(self) -> str | None:
        tokens = [v for _, v in self.samples if isinstance(v, str)]
        return tokens[-1] if tokens else None

    def first_other(self, token: str, after: float) -> float | None:
        for at, value in self.samples:
            if at >= after and isinstance(value, str) and value != token:
                return at
        return None

    def bad(self) -> int:
        """Samples that were an error or an expired token."""
        return sum(
            1 for at, v in self.samples if isinstance(v, BaseException) or _exp(str(v)) <= at
        )


@dataclass
class RoundResult:
    outage: float
    attempts: dict[str, int]
    recovery: dict[str, float]
    bad: dict[str, int]


class Helpers:
    def __init__(self, credentials: Path, out: Path, renew_before: float, log: Path) -> None:
        creds = Credentials.from_directory(credentials)
        options = {"audience": AUDIENCE, "scope": "read", "renew_before": renew_before}
        self.sync = TokenSource(creds, **options)  # type: ignore[arg-type]
        self.async_ = AsyncTokenSource(creds, **options)  # type: ignore[arg-type]
        self.out, self.log = out, log
        self.traces = {name: Trace() for name in HELPERS}
        self._stop = threading.Event()
        argv = [
            *(sys.executable, "-m", "kubemint", "token", "--credentials", str(credentials)),
            *("--audience", AUDIENCE, "--scope", "read", "--watch", "--out", str(out)),
            *("--renew-before", str(renew_before)),
        ]
        self._sink = log.open("wb")
        self._sidecar = subprocess.Popen(argv, stderr=self._sink)
        self._threads = [
            threading.Thread(target=self._poll_sync, daemon=True),
            threading.Thread(target=lambda: asyncio.run(self._poll_async()), daemon=True),
            threading.Thread(target=self._read_file, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        self._sidecar.terminate()
        self._sidecar.wait(15)
        self._sink.close()
        self.sync.close()

    def attempts(self) -> dict[str, int]:
        return {
            "sidecar file": self.log.read_text().count("could not refresh"),
            "TokenSource": self.sync.failures,
            "AsyncTokenSource": self.async_.failures,
        }

    def _record(self, name: str, get: Callable[[], str]) -> None:
        try:
            value: str | BaseException = get()
        except Exception as exc:
            value = exc
        self.traces[name].samples.append((time.time(), value))

    def _poll_sync(self) -> None:
        while not self._stop.wait(0.2):
            self._record("TokenSource", self.sync.token)

    def _read_file(self) -> None:
        while not self._stop.wait(0.05):
            if self.out.exists():
                self._record("sidecar file", self.out.read_text)

    async def _poll_async(self) -> None:
        async with self.async_:
            while not self._stop.is_set():
                try:
                    value: str | BaseException = await self.async_.token()
                except Exception as exc:
                    value = exc
                self.traces["AsyncTokenSource"].samples.append((time.time(), value))
                await asyncio.sleep(0.2)


def _wait(probe: Callable[[], object], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"timed out waiting for {what}")
        time.sleep(0.2)


def run(args: argparse.Namespace) -> list[RoundResult]:
    results: list[RoundResult] = []
    work = Path(tempfile.mkdtemp(prefix="kubemint-outage-"))
    with ControlPlane(resolve_binaries(), crd_paths=[layout.crds_dir()]) as plane:
        for namespace in (SERVER_NAMESPACE, NAMESPACE):
            plane.kubectl("create", "namespace", namespace)
        plane.kubectl(
            "apply",
            "-f",
            "-",
            stdin=MANIFESTS.format(
                server=SERVER_NAMESPACE,
                namespace=NAMESPACE,
                audience=AUDIENCE,
                lifetime=int(args.lifetime),
            ),
        )
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        operator = operator_process(plane, namespace=SERVER_NAMESPACE, issuer=issuer)
        server = token_server_process(
            plane, namespace=SERVER_NAMESPACE, issuer=issuer, port=port, log_dir=work
        )
        operator.start()
        server.start()
        try:
            wait_for_leader(plane, SERVER_NAMESPACE, "kubemint-operator", "operator")
            wait_for_http(issuer + "/readyz", server)
            credentials = work / "credentials"
            credentials.mkdir()
            _write_secret(plane, credentials)
            probe = TokenSource(Credentials.from_directory(credentials), audience=AUDIENCE)
            _wait(lambda: _works(probe), "the first token", 120)
            probe.close()
            for number in range(1, args.rounds + 1):
                result = _round(args, server, issuer, credentials, work / f"round-{number}")
                results.append(result)
                _print_round(number, result)
        finally:
            server.stop()
            operator.stop()
    return results


def _write_secret(plane: ControlPlane, directory: Path) -> None:
    def fetched() -> bool:
        out = plane.kubectl(
            "get", "secret", "app-credentials", "-n", NAMESPACE, "-o", "json", check=False
        )
        if out.returncode != 0:
            return False
        for key, value in json.loads(out.stdout)["data"].items():
            (directory / key).write_bytes(base64.b64decode(value))
        return True

    _wait(fetched, "the client's Secret", 120)


def _works(source: TokenSource) -> bool:
    try:
        source.token(force=True)
    except Exception:
        return False
    return True


def _round(
    args: argparse.Namespace, server: ManagedProcess, issuer: str, credentials: Path, work: Path
) -> RoundResult:
    work.mkdir()
    helpers = Helpers(credentials, work / "token", args.renew_before, work / "sidecar.log")
    try:
        _wait(lambda: all(t.last() for t in helpers.traces.values()), "every helper's token", 60)
        before = {name: str(t.last()) for name, t in helpers.traces.items()}
        server.stop()
        stopped = time.time()
        time.sleep(args.outage)
        attempts = helpers.attempts()
        server.start()
        wait_for_http(issuer + "/readyz", server, timeout=120)  # the view is rebuilt first
        back = time.time()
        _wait(
            lambda: all(helpers.traces[n].first_other(before[n], back) for n in HELPERS),
            "every helper's token after the outage",
            60,
        )
        recovery = {
            n: float(helpers.traces[n].first_other(before[n], back) or 0) - back for n in HELPERS
        }
        time.sleep(0.5)
    finally:
        helpers.close()
    return RoundResult(
        outage=back - stopped,
        attempts=attempts,
        recovery=recovery,
        bad={n: helpers.traces[n].bad() for n in HELPERS},
    )


def _print_round(number: int, result: RoundResult) -> None:
    parts = [
        f"{n}: {result.attempts[n]} failed attempts, recovered {result.recovery[n]:.1f}s, "
        f"{result.bad[n]} bad answers"
        for n in HELPERS
    ]
    print(f"round {number}: outage {result.outage:.0f}s; " + "; ".join(parts), flush=True)


def report(results: Sequence[RoundResult]) -> None:
    print(
        f"\n{len(results)} round(s), median outage "
        f"{statistics.median(r.outage for r in results):.0f}s"
    )
    print(
        f"{'helper':<18} {'failed attempts':>16} {'recovery s (median)':>20} {'max':>6} {'bad':>4}"
    )
    for n in HELPERS:
        print(
            f"{n:<18} {statistics.median(r.attempts[n] for r in results):>16.0f} "
            f"{statistics.median(r.recovery[n] for r in results):>20.1f} "
            f"{max(r.recovery[n] for r in results):>6.1f} {sum(r.bad[n] for r in results):>4}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.outage_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--outage", type=float, default=180.0, help="seconds the server is down")
    parser.add_argument("--lifetime", type=float, default=600.0, help="token lifetime, seconds")
    parser.add_argument(
        "--renew-before", type=float, default=540.0, help="renew with this many seconds left"
    )
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    logging.getLogger("kubemint.client").setLevel(logging.ERROR)  # counted, not printed
    try:
        results = run(args)
    except KeyboardInterrupt:
        return 130
    except ControlPlaneError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
