"""Operator benchmark: how fast `kubemint operator` makes 1,000 OAuth2Clients Ready, and at
what memory cost.

Each round starts a fresh local control plane (etcd + kube-apiserver + controller-manager),
creates the benchmark namespaces, the `default` SigningKey in the server namespace and a few
AccessRules, starts a real `kubemint operator` subprocess and waits until it leads. Then the
clock starts (t0) and N OAuth2Clients are applied, spread over K namespaces (one server-side
`kubectl apply` per namespace, run concurrently). Meanwhile one LIST of all OAuth2Clients every
~0.5 s counts those with condition Ready=True until all N are. The LIST asks for the server-side
Table (the CRD's `Ready` printer column, no objects): a full JSON LIST of 1,000 clients costs the
API server ~85 ms and this script ~40 ms of CPU, a sixth of the machine at two polls a second,
and would slow down what it measures; the Table costs ~15 ms and ~4 ms. This gives:

- apply:      seconds to get all N objects accepted by the API server;
- first:      seconds from t0 until the first client was Ready;
- ready:      seconds from t0 until all N were Ready (the acceptance figure);
- idle:       seconds from t0 until the operator went idle (below 5% of a core for 2 s; at most
              30 s after all are Ready): Ready is not the end of its work, kopf may still run
              handlers, and its memory can still grow;
- clients/s:  N / ready;
- peak RSS:   the operator's VmHWM from /proc/<pid>/status (its peak resident set), read once
              it is idle;
- CPU:        the operator's utime+stime from /proc/<pid>/stat, whole life and from t0 on;
- others:     CPU seconds the rest of the machine (other sessions' tests, …) used from t0 until
              idle, i.e. /proc/stat busy time minus the operator, the control plane and this
              script with its kubectl children: when it is large the round was disturbed.

The round then checks correctness (exactly N credentials Secrets in the client namespaces and N
verification Secrets in the server namespace, all labelled managed-by=kubemint) and stops
everything. Targets (the issue's acceptance criterion on 2-core machines): all Ready within
60 s and operator RSS under 250 MB.

Why medians: these are small shared 2-core machines where the operator, the API server, etcd
and this script compete for CPU; one round can be slowed by a neighbour or a GC pause. The
median of several rounds (each on a fresh control plane, so rounds are independent) is a
figure that one outlier cannot move. Each figure's median is taken on its own.

Run `make bench-operator` (or `python -m bench.operator_bench --help`). Exit status: 0 when every
round completed (even if a target was missed: this is a measurement), 1 when a round failed
(timeout, wrong Secret counts, operator died), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import ssl
import statistics
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubemint.devcluster import ControlPlane, ControlPlaneError, layout, resolve_binaries
from kubemint.devcluster.components import operator_process, wait_for_leader
from kubemint.devcluster.processes import ManagedProcess

API = "kubemint.io/v1alpha1"
SERVER_NAMESPACE = "kubemint-system"
ISSUER = "https://kubemint-token-server.kubemint-system.svc"
LEASE = "kubemint-operator"
OPERATOR_NAME = "bench-operator"
CLIENTS_PATH = "/apis/kubemint.io/v1alpha1/oauth2clients"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"

TARGET_READY_SECONDS = 60.0
TARGET_RSS_MB = 250.0
POLL_INTERVAL = 0.5
IDLE_CPU_SHARE = 0.05  # the operator counts as idle below 5% of a core …
IDLE_SECONDS = 2.0  # … for this long
SETTLE_LIMIT = 30.0  # longest wait for idleness after all are Ready
MB = 1024 * 1024


class BenchError(RuntimeError):
    """A round did not complete: the measurement is void."""


class ApiError(BenchError):
    """The API server answered a GET with an error status."""


@dataclass(frozen=True)
class Options:
    clients: int
    namespaces: int
    rules: int
    rounds: int
    timeout: float
    recheck_interval: float
    log_dir: Path | None


@dataclass(frozen=True)
class RoundResult:
    clients: int
    apply_seconds: float
    first_ready_seconds: float
    ready_seconds: float
    idle_seconds: float
    peak_rss_mb: float
    cpu_seconds: float
    load_cpu_seconds: float
    other_cpu_seconds: float
    polls: int  # how many LISTs the wait took (kept for debugging)

    @property
    def clients_per_second(self) -> float:
        return self.clients / self.ready_seconds if self.ready_seconds > 0 else 0.0


# -- manifests -------------------------------------------------------------------------------


def namespace_names(count: int) -> list[str]:
    return [f"bench-{i:02d}" for i in range(count)]


def audience(index: int) -> str:
    return f"https://api-{index}.bench.example.com"


def client_placement(options: Options) -> dict[str, list[str]]:
    """namespace → names of its clients; client i goes to namespace i mod K."""
    spaces = namespace_names(options.namespaces)
    placed: dict[str, list[str]] = {ns: [] for ns in spaces}
    for i in range(options.clients):
        placed[spaces[i % len(spaces)]].append(f"client-{i:05d}")
    return placed


def _dump(documents: Sequence[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


def setup_manifests(options: Options) -> str:
    """Namespaces, the `default` SigningKey, and R AccessRules naming a few clients each."""
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        for ns in [SERVER_NAMESPACE, *namespace_names(options.namespaces)]
    ]
    docs.append(
        {
            "apiVersion": API,
            "kind": "SigningKey",
            "metadata": {"name": "default", "namespace": SERVER_NAMESPACE},
            "spec": {"algorithm": "ES256"},
        }
    )
    placement = client_placement(options)
    spaces = namespace_names(options.namespaces)
    for r in range(options.rules):
        subjects = []
        for k in range(4):  # four clients per rule, from different namespaces where possible
            ns = spaces[(r + k) % len(spaces)]
            names = placement[ns]
            if names:
                subjects.append(
                    {"kind": "OAuth2Client", "namespace": ns, "name": names[r % len(names)]}
                )
        docs.append(
            {
                "apiVersion": API,
                "kind": "AccessRule",
                "metadata": {"name": f"rule-{r}", "namespace": spaces[r % len(spaces)]},
                "spec": {"audience": audience(r), "subjects": subjects, "scopes": ["read"]},
            }
        )
    return _dump(docs)


def client_manifests(namespace: str, names: Sequence[str], rules: int) -> str:
    docs = []
    for name in names:
        index = int(name.rsplit("-", 1)[1])
        audiences = [audience(index % rules)] if rules else ["https://api.example.com"]
        docs.append(
            {
                "apiVersion": API,
                "kind": "OAuth2Client",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"audiences": audiences, "scopes": ["read"]},
            }
        )
    return _dump(docs)


# -- /proc -----------------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the peak resident set size of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MB  # the kernel reports kB
    raise BenchError(f"no VmHWM for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (its own threads; not reaped children)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent not idle since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds(pids: Sequence[int]) -> float:
    """This script (with its finished kubectl children) plus the given live processes."""
    times = os.times()
    mine = times.user + times.system + times.children_user + times.children_system
    return mine + sum(cpu_seconds(pid) for pid in pids)


# -- one round -------------------------------------------------------------------------------


class Api:
    """Admin GETs on the API server over one kept-alive TLS connection (no handshake per poll)."""

    def __init__(self, plane: ControlPlane) -> None:
        assert plane.pki is not None, "control plane not started"
        self._context = ssl.create_default_context(cafile=str(plane.pki.ca.cert))
        self._context.load_cert_chain(str(plane.pki.admin.cert), str(plane.pki.admin.key))
        self._port = plane.api_port
        self._connection: http.client.HTTPSConnection | None = None

    def get(self, path: str, accept: str = "application/json") -> Any:
        for attempt in range(2):  # a kept-alive connection may have been closed by the server
            connection = self._connection or http.client.HTTPSConnection(
                "127.0.0.1", self._port, context=self._context, timeout=30
            )
            try:
                connection.request("GET", path, headers={"Accept": accept})
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                self._connection = None
                if attempt:
                    raise
                continue
            self._connection = connection
            if response.status != 200:
                raise ApiError(f"GET {path}: HTTP {response.status}: {body[:200]!r}")
            return json.loads(body)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()

    def client_readiness(self) -> tuple[int, int]:
        """(OAuth2Clients, of which Ready=True) from one Table LIST."""
        table = self.get(CLIENTS_PATH + "?includeObject=None", accept=TABLE)
        columns = [column["name"] for column in table.get("columnDefinitions") or []]
        if "Ready" not in columns:
            raise BenchError(f"the OAuth2Client CRD has no Ready printer column: {columns}")
        ready = columns.index("Ready")
        rows = table.get("rows") or []
        return len(rows), sum(1 for row in rows if row["cells"][ready] == "True")

    def count_secrets(self, role: str, namespace: str | None = None) -> int:
        selector = urllib.parse.urlencode(
            {"labelSelector": f"app.kubernetes.io/managed-by=kubemint,kubemint.io/role={role}"}
        )
        prefix = f"/api/v1/namespaces/{namespace}" if namespace else "/api/v1"
        return len(self.get(f"{prefix}/secrets?{selector}").get("items") or [])


def apply_clients(plane: ControlPlane, manifests: Mapping[str, str], timeout: float) -> float:
    """One server-side apply per namespace, all namespaces at once; returns when all are done."""

    def apply(manifest: str) -> float:
        plane.kubectl("apply", "--server-side", "-f", "-", stdin=manifest, timeout=timeout)
        return time.monotonic()

    with ThreadPoolExecutor(max_workers=len(manifests)) as pool:
        return max(
            future.result() for future in [pool.submit(apply, m) for m in manifests.values()]
        )


def run_round(options: Options, number: int) -> RoundResult:
    with ControlPlane(resolve_binaries(), crd_paths=[layout.crds_dir()]) as plane:
        plane.kubectl("apply", "--server-side", "-f", "-", stdin=setup_manifests(options))
        log_dir = options.log_dir / f"round-{number}" if options.log_dir else None
        if log_dir:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / f"{OPERATOR_NAME}.log").unlink(missing_ok=True)
        operator = operator_process(
            plane,
            namespace=SERVER_NAMESPACE,
            issuer=ISSUER,
            name=OPERATOR_NAME,
            recheck_interval=options.recheck_interval,
            lease_name=LEASE,
            log_dir=log_dir,
        )
        api = Api(plane)
        try:
            operator.start()
            wait_for_leader(plane, SERVER_NAMESPACE, LEASE, OPERATOR_NAME)
            return measure(plane, api, operator, options)
        except (BenchError, OSError) as exc:  # OSError: /proc/<pid> gone with the operator
            raise BenchError(
                f"{exc}\n--- operator log ends with:\n{operator.log_tail(20)}"
            ) from exc
        finally:
            api.close()
            operator.stop()


def measure(
    plane: ControlPlane, api: Api, operator: ManagedProcess, options: Options
) -> RoundResult:
    pid = operator.pid
    assert pid is not None
    helpers = [p.pid for p in plane.processes if p.pid is not None]
    manifests = {
        namespace: client_manifests(namespace, names, options.rules)
        for namespace, names in client_placement(options).items()
        if names
    }
    cpu_before = cpu_seconds(pid)
    own_before, busy_before = own_cpu_seconds([pid, *helpers]), machine_busy_seconds()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="apply") as background:
        t0 = time.monotonic()
        applying = background.submit(apply_clients, plane, manifests, options.timeout)
        first_ready, ready_seconds, polls = wait_until_ready(api, operator, applying, options, t0)
        apply_seconds = applying.result() - t0
    # Ready is not the end of the work (kopf may still run handlers that change nothing, and
    # memory can still grow): the peak is read once the operator has gone idle.
    idle_seconds = (
        wait_until_idle(pid, min(SETTLE_LIMIT, max(0.0, t0 + options.timeout - time.monotonic())))
        - t0
    )
    rss, cpu = peak_rss_mb(pid), cpu_seconds(pid)
    own = own_cpu_seconds([pid, *helpers]) - own_before
    others = max(0.0, machine_busy_seconds() - busy_before - own)

    credentials = api.count_secrets("client-credentials")
    verification = api.count_secrets("client-verification", SERVER_NAMESPACE)
    if credentials != options.clients or verification != options.clients:
        raise BenchError(
            f"expected {options.clients} credentials and verification Secrets, found "
            f"{credentials} and {verification}"
        )
    return RoundResult(
        clients=options.clients,
        apply_seconds=apply_seconds,
        first_ready_seconds=first_ready,
        ready_seconds=ready_seconds,
        idle_seconds=idle_seconds,
        peak_rss_mb=rss,
        cpu_seconds=cpu,
        load_cpu_seconds=cpu - cpu_before,
        other_cpu_seconds=others,
        polls=polls,
    )


def wait_until_ready(
    api: Api,
    operator: ManagedProcess,
    applying: Future[float],
    options: Options,
    t0: float,
) -> tuple[float, float, int]:
    """Poll (one LIST) until all N clients are Ready: (first Ready, all Ready, polls)."""
    first_ready: float | None = None
    polls = 0
    deadline = t0 + options.timeout
    while True:
        if not operator.alive():
            raise BenchError("the operator exited during the round")
        if applying.done() and (error := applying.exception()) is not None:
            raise BenchError(f"applying the clients failed: {error}")
        try:
            total, ready = api.client_readiness()
        except (OSError, http.client.HTTPException, ApiError):  # overloaded for now: poll again
            total, ready = 0, 0
        now = time.monotonic()
        polls += 1
        if ready and first_ready is None:
            first_ready = now - t0
        if total == options.clients and ready == options.clients:
            ready_seconds = now - t0
            break
        if now > deadline:
            raise BenchError(
                f"timed out after {options.timeout:.0f}s: {ready}/{options.clients} Ready"
            )
        time.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - now)))
    return (first_ready if first_ready is not None else ready_seconds), ready_seconds, polls


def wait_until_idle(pid: int, limit: float) -> float:
    """The moment (monotonic) the operator's CPU use fell below IDLE_CPU_SHARE for
    IDLE_SECONDS; the moment `limit` seconds ran out if it never did."""
    step = 0.5
    deadline = time.monotonic() + limit
    quiet_since: float | None = None
    last_cpu, last_time = cpu_seconds(pid), time.monotonic()
    while True:
        time.sleep(step)
        cpu, now = cpu_seconds(pid), time.monotonic()
        busy = (cpu - last_cpu) / (now - last_time) >= IDLE_CPU_SHARE
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = last_time
        if quiet_since is not None and now - quiet_since >= IDLE_SECONDS:
            return quiet_since
        if now >= deadline:
            return now
        last_cpu, last_time = cpu, now


# -- report ----------------------------------------------------------------------------------


def describe(result: RoundResult) -> str:
    return (
        f"apply {result.apply_seconds:6.2f}s  first Ready {result.first_ready_seconds:6.2f}s  "
        f"all Ready {result.ready_seconds:6.2f}s  idle {result.idle_seconds:6.2f}s  "
        f"{result.clients_per_second:5.1f} clients/s  "
        f"peak RSS {result.peak_rss_mb:6.1f} MB  CPU {result.cpu_seconds:6.2f}s "
        f"({result.load_cpu_seconds:.2f}s under load)  others {result.other_cpu_seconds:.1f} CPU-s"
    )


def summarize(results: Sequence[RoundResult], options: Options) -> str:
    def median(values: Sequence[float]) -> float:
        return statistics.median(values)

    ready = median([r.ready_seconds for r in results])
    rss = median([r.peak_rss_mb for r in results])
    lines = [
        f"median of {len(results)} round(s), {options.clients} OAuth2Clients in "
        f"{options.namespaces} namespaces, {options.rules} AccessRules:",
        f"  apply                {median([r.apply_seconds for r in results]):8.2f} s",
        f"  first Ready          {median([r.first_ready_seconds for r in results]):8.2f} s",
        f"  all Ready            {ready:8.2f} s",
        f"  operator idle        {median([r.idle_seconds for r in results]):8.2f} s "
        "(its CPU below 5% of a core)",
        f"  clients/s            {median([r.clients_per_second for r in results]):8.1f}",
        f"  operator peak RSS    {rss:8.1f} MB",
        f"  operator CPU         {median([r.cpu_seconds for r in results]):8.2f} s "
        f"({median([r.load_cpu_seconds for r in results]):.2f} s under load)",
        f"  other processes' CPU {median([r.other_cpu_seconds for r in results]):8.1f} s "
        "(machine noise while loading; ideally near 0)",
    ]
    scale = (
        "" if options.clients == 1000 else f" (targets are for 1000 clients; ran {options.clients})"
    )
    ready_ok = ready <= TARGET_READY_SECONDS
    rss_ok = rss < TARGET_RSS_MB
    lines.append(
        f"verdict: all Ready {ready:.1f}s {'<=' if ready_ok else '>'} {TARGET_READY_SECONDS:.0f}s "
        f"{'PASS' if ready_ok else 'MISS'}; peak RSS {rss:.1f} MB "
        f"{'<' if rss_ok else '>='} {TARGET_RSS_MB:.0f} MB {'PASS' if rss_ok else 'MISS'}{scale}"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.operator_bench",
        description="Time until N OAuth2Clients are Ready, and the operator's peak memory.",
    )
    parser.add_argument("--clients", type=int, default=1000, help="OAuth2Clients (1000)")
    parser.add_argument("--namespaces", type=int, default=10, help="client namespaces (10)")
    parser.add_argument("--rules", type=int, default=5, help="AccessRules (5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each on a fresh cluster (3)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per round (300)")
    parser.add_argument(
        "--recheck-interval", type=float, default=30, help="operator re-check seconds (30)"
    )
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="keep the operator logs here (round-N/)"
    )
    args = parser.parse_args(argv)
    if args.clients < 1 or args.namespaces < 1 or args.rounds < 1 or args.rules < 0:
        parser.error("--clients, --namespaces and --rounds must be >= 1, --rules >= 0")
    return Options(
        clients=args.clients,
        namespaces=min(args.namespaces, args.clients),
        rules=args.rules,
        rounds=args.rounds,
        timeout=args.timeout,
        recheck_interval=args.recheck_interval,
        log_dir=args.log_dir,
    )


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    # SIGTERM stops like Ctrl-C: the `with`/`finally` blocks stop the operator and the control
    # plane and remove their working directory.
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"operator benchmark: {options.clients} OAuth2Clients, {options.namespaces} namespaces, "
        f"{options.rules} AccessRules, {options.rounds} round(s), {os.cpu_count()} CPUs",
        flush=True,
    )
    results: list[RoundResult] = []
    try:
        for number in range(1, options.rounds + 1):
            result = run_round(options, number)
            results.append(result)
            print(f"round {number}: {describe(result)}", flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, ControlPlaneError) as exc:
        print(f"round {len(results) + 1} failed: {exc}", file=sys.stderr)
        return 1
    print(summarize(results, options), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
