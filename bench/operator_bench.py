"""Operator benchmark: how fast `kubemint operator` makes a population of OAuth2Clients,
AccessRules and ServiceAccounts Ready, at what memory cost and with how many API requests.

Each round starts a fresh local control plane (etcd + kube-apiserver + controller-manager),
creates the benchmark namespaces and the `default` SigningKey in the server namespace, applies
the chart's MutatingAdmissionPolicy that sets the operator's finalizer at creation (as a helm
install on Kubernetes 1.36+ does; `--no-finalizer-policy` leaves it out), starts a
real `kubemint operator` subprocess and waits until it leads. Then the clock starts (t0) and the
population is created with plain POSTs over CREATORS kept-alive connections: N OAuth2Clients
spread over K namespaces, R AccessRules (each claims its own audience, names four clients and
has a CEL `when`) and A kubemint ServiceAccounts (one client each, with app passwords).
(`kubectl apply` per namespace cost more CPU than the operator: the load generator must not be
what is measured.) Meanwhile one Table LIST per kind every ~0.5 s counts the objects with
Ready=True until all are. The server-side Table (the CRD's `Ready` printer column, no objects)
costs the API server and this script a fraction of a JSON LIST, which would slow down what it
measures. This gives:

- apply:      seconds to get every object accepted by the API server;
- first:      seconds from t0 until the first client was Ready;
- clients:    seconds from t0 until all N clients were Ready;
- ready:      seconds from t0 until every object was Ready (the acceptance figure);
- idle:       seconds from t0 until the operator went idle (below 5% of a core for 2 s; at most
              30 s after all are Ready): Ready is not the end of its work, kopf may still run
              handlers, and its memory can still grow;
- clients/s:  N / ready;
- peak RSS:   the operator's VmHWM from /proc/<pid>/status (its peak resident set), read once
              it is idle (after the idle window, with --idle-window);
- CPU:        the operator's utime+stime from /proc/<pid>/stat, whole life and from t0 on;
- others:     CPU seconds the rest of the machine (other sessions' tests, …) used from t0 until
              idle, i.e. /proc/stat busy time minus the operator, the control plane and this
              script: when it is large the round was disturbed;
- requests:   the API server's apiserver_request_total (by verb and resource) from t0 until
              idle, less this script's creates, Table LISTs and /metrics reads: the operator's
              requests (plus the controller-manager's few);
- at rest:    with --idle-window S, requests per minute and operator CPU over S seconds after
              idle (lease renewals, watch restarts, timers of Ready objects).

The round then checks correctness (exactly N credentials Secrets in the client namespaces and N
verification Secrets in the server namespace, A app-password Secrets and A account records, all
labelled managed-by=kubemint) and stops everything. Targets (the issue's acceptance criteria on
2-core machines): 1,000 clients all Ready within 60 s with RSS under 250 MB; 10,000 clients
(100 namespaces, 500 rules, 1,000 accounts) within 5 minutes with RSS under 500 MB.

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
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubemint.devcluster import ControlPlane, ControlPlaneError, layout, resolve_binaries
from kubemint.devcluster.components import operator_process, wait_for_leader
from kubemint.devcluster.helm import resolve_helm
from kubemint.devcluster.processes import ManagedProcess

API = "kubemint.io/v1alpha1"
SERVER_NAMESPACE = "kubemint-system"
ISSUER = "https://kubemint-token-server.kubemint-system.svc"
LEASE = "kubemint-operator"
OPERATOR_NAME = "bench-operator"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
PLURAL = {
    "OAuth2Client": "oauth2clients",
    "AccessRule": "accessrules",
    "ServiceAccount": "serviceaccounts",
}

POLL_INTERVAL = 0.5
IDLE_CPU_SHARE = 0.05  # the operator counts as idle below 5% of a core …
IDLE_SECONDS = 2.0  # … for this long
SETTLE_LIMIT = 30.0  # longest wait for idleness after all are Ready
MB = 1024 * 1024
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LABEL = re.compile(r'(\w+)="([^"]*)"')


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
    accounts: int = 0
    idle_window: float = 0.0
    profile: Path | None = None
    finalizer_policy: bool = True
    apiserver_profile: Path | None = None
    apiserver_profile_seconds: float = 60.0


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
    clients_ready_seconds: float = 0.0  # all OAuth2Clients Ready (rules, accounts may lag)
    requests: Mapping[tuple[str, str], int] = field(default_factory=dict)  # operator's, t0→idle
    idle_requests: Mapping[tuple[str, str], int] = field(default_factory=dict)  # idle window
    idle_window_seconds: float = 0.0
    idle_cpu_seconds: float = 0.0  # operator CPU during the idle window
    # CPU seconds t0→idle of each control-plane process (kube-apiserver, etcd, …) and of this
    # script ("bench"): who shares the cores with the operator.
    process_cpu: Mapping[str, float] = field(default_factory=dict)

    @property
    def writes(self) -> int:
        return sum(n for (verb, _), n in self.requests.items() if verb in WRITE_VERBS)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

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


RULE_WHEN = "request.grant_type == 'client_credentials' && 'read' in request.scopes"


def setup_manifests(options: Options) -> str:
    """Namespaces and the `default` SigningKey: what exists before the operator starts."""
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
    return _dump(docs)


MAP_API = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"
FINALIZER_POLICY = "templates/operator-finalizer-policy.yaml"


def finalizer_policy_manifest() -> str:
    """The chart's MutatingAdmissionPolicy that sets the operator's finalizer at creation, as
    `helm install` would apply it on Kubernetes 1.36+ (rendered by helm from the chart)."""
    chart = layout.repo_root() / "charts" / "kubemint"
    result = subprocess.run(
        [
            str(resolve_helm()),
            "template",
            "kubemint",
            str(chart),
            "--namespace",
            SERVER_NAMESPACE,
            "--api-versions",
            MAP_API,
            "--show-only",
            FINALIZER_POLICY,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"helm template {FINALIZER_POLICY} failed: {result.stderr}")
    return result.stdout


def rule_manifests(options: Options) -> dict[str, list[dict[str, Any]]]:
    """namespace → its AccessRules: rule r claims audience r, in namespace r mod K, names
    four clients (from different namespaces where possible) and has a `when`."""
    placement = client_placement(options)
    spaces = namespace_names(options.namespaces)
    placed: dict[str, list[dict[str, Any]]] = {ns: [] for ns in spaces}
    for r in range(options.rules):
        subjects = []
        for k in range(4):
            ns = spaces[(r + k) % len(spaces)]
            names = placement[ns]
            if names:
                subjects.append(
                    {"kind": "OAuth2Client", "namespace": ns, "name": names[r % len(names)]}
                )
        namespace = spaces[r % len(spaces)]
        placed[namespace].append(
            {
                "apiVersion": API,
                "kind": "AccessRule",
                "metadata": {"name": f"rule-{r}", "namespace": namespace},
                "spec": {
                    "audience": audience(r),
                    "subjects": subjects,
                    "scopes": ["read"],
                    "when": RULE_WHEN,
                },
            }
        )
    return placed


def account_manifests(options: Options) -> dict[str, list[dict[str, Any]]]:
    """namespace → its kubemint ServiceAccounts: account j lives in namespace j mod K, may
    use one client of that namespace and has an app password (a Secret and a record)."""
    placement = client_placement(options)
    spaces = namespace_names(options.namespaces)
    placed: dict[str, list[dict[str, Any]]] = {ns: [] for ns in spaces}
    for j in range(options.accounts):
        namespace = spaces[j % len(spaces)]
        names = placement[namespace]
        placed[namespace].append(
            {
                "apiVersion": API,
                "kind": "ServiceAccount",
                "metadata": {"name": f"account-{j:05d}", "namespace": namespace},
                "spec": {
                    "clients": [names[(j // len(spaces)) % len(names)]],
                    "appPasswords": {"secretName": f"account-{j:05d}-password"},
                },
            }
        )
    return placed


def client_docs(names: Sequence[str], namespace: str, rules: int) -> list[dict[str, Any]]:
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
    return docs


def population(options: Options) -> list[dict[str, Any]]:
    """Every object created at t0 (so each is new to the operator): per namespace its
    clients, then its accounts, then its rules."""
    rules, accounts = rule_manifests(options), account_manifests(options)
    return [
        doc
        for namespace, names in client_placement(options).items()
        for doc in [
            *client_docs(names, namespace, options.rules),
            *accounts.get(namespace, []),
            *rules.get(namespace, []),
        ]
    ]


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
        return json.loads(self.get_bytes(path, accept))

    def get_bytes(self, path: str, accept: str = "application/json") -> bytes:
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
            return body
        raise AssertionError("unreachable")

    def post(self, path: str, body: Mapping[str, Any]) -> None:
        """Create an object (201); a new connection once if the kept-alive one was closed."""
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in range(2):
            connection = self._connection or http.client.HTTPSConnection(
                "127.0.0.1", self._port, context=self._context, timeout=30
            )
            try:
                connection.request("POST", path, body=payload, headers=headers)
                response = connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                self._connection = None
                if attempt:
                    raise
                continue
            self._connection = connection
            if response.status == 409 and attempt:
                return  # created by the first attempt, whose answer was lost
            if response.status != 201:
                raise ApiError(f"POST {path}: HTTP {response.status}: {answer[:200]!r}")
            return

    def request_counts(self) -> Counter[tuple[str, str]]:
        """The API server's apiserver_request_total summed by (verb, resource[/subresource])
        (the operator's requests and everyone else's: see `operator_requests`)."""
        counts: Counter[tuple[str, str]] = Counter()
        for line in self.get_bytes("/metrics", accept="text/plain").decode().splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(_LABEL.findall(line[: line.rindex("}")]))
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            counts[labels.get("verb", ""), resource] += int(float(line.rsplit(" ", 1)[1]))
        return counts

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()

    def readiness(self, plural: str) -> tuple[int, int]:
        """(objects of this kubemint kind, of which Ready=True) from one Table LIST."""
        path = f"/apis/{API}/{plural}?includeObject=None"
        table = self.get(path, accept=TABLE)
        columns = [column["name"] for column in table.get("columnDefinitions") or []]
        if "Ready" not in columns:
            raise BenchError(f"the {plural} CRD has no Ready printer column: {columns}")
        ready = columns.index("Ready")
        rows = table.get("rows") or []
        return len(rows), sum(1 for row in rows if row["cells"][ready] == "True")

    def count_secrets(self, role: str, namespace: str | None = None) -> int:
        selector = urllib.parse.urlencode(
            {"labelSelector": f"app.kubernetes.io/managed-by=kubemint,kubemint.io/role={role}"}
        )
        prefix = f"/api/v1/namespaces/{namespace}" if namespace else "/api/v1"
        return len(self.get(f"{prefix}/secrets?{selector}").get("items") or [])


CREATORS = 4  # connections creating the population at once


def create_population(
    plane: ControlPlane, docs: Sequence[dict[str, Any]], stopping: threading.Event
) -> float:
    """POST every object, CREATORS at a time over kept-alive connections; returns when all
    are created, or once `stopping` is set (a failed or interrupted round). (One `kubectl
    apply` per namespace cost more CPU than the operator itself: the load generator must not
    be what is measured.)"""
    todo = iter(docs)
    lock = threading.Lock()

    def creator() -> None:
        api = Api(plane)
        try:
            while True:
                with lock:
                    doc = next(todo, None)
                if doc is None or stopping.is_set():
                    return
                meta = doc["metadata"]
                api.post(f"/apis/{API}/namespaces/{meta['namespace']}/{PLURAL[doc['kind']]}", doc)
        finally:
            api.close()

    with ThreadPoolExecutor(max_workers=CREATORS, thread_name_prefix="create") as pool:
        for future in [pool.submit(creator) for _ in range(CREATORS)]:
            future.result()
    return time.monotonic()


def run_round(options: Options, number: int) -> RoundResult:
    with ControlPlane(
        resolve_binaries(),
        crd_paths=[layout.crds_dir()],
        profiling=options.apiserver_profile is not None,
    ) as plane:
        plane.kubectl("apply", "--server-side", "-f", "-", stdin=setup_manifests(options))
        if options.finalizer_policy:
            plane.kubectl("apply", "-f", "-", stdin=finalizer_policy_manifest())
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
        profiler: subprocess.Popen[bytes] | None = None
        try:
            operator.start()
            wait_for_leader(plane, SERVER_NAMESPACE, LEASE, OPERATOR_NAME)
            if options.profile is not None:
                profiler = start_profiler(operator, options.profile, number)
            return measure(plane, api, operator, options, number)
        except (BenchError, OSError) as exc:  # OSError: /proc/<pid> gone with the operator
            raise BenchError(
                f"{exc}\n--- operator log ends with:\n{operator.log_tail(20)}"
            ) from exc
        finally:
            if profiler is not None:
                stop_profiler(profiler)
            api.close()
            operator.stop()


def start_profiler(
    operator: ManagedProcess, directory: Path, number: int
) -> subprocess.Popen[bytes]:
    """py-spy sampling the operator (all threads, GIL holders marked) into a speedscope file:
    where its CPU goes at this size. py-spy must be installed (pip install py-spy)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise BenchError("--profile needs py-spy (pip install py-spy)")
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"operator-round-{number}.speedscope.json"
    return subprocess.Popen(  # our own py-spy on our own child process
        [
            spy,
            "record",
            "--pid",
            str(operator.pid),
            "--rate",
            "20",
            "--format",
            "speedscope",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(directory / f"py-spy-round-{number}.log").open("wb"),
    )


def record_apiserver_profile(plane: ControlPlane, out: Path, seconds: float) -> None:
    """kube-apiserver's CPU profile (Go pprof, /debug/pprof/profile) over `seconds` from t0:
    where the API server's time goes per create and per operator write. Read it with
    `go tool pprof -top <file>` (the binary is not needed: the profile carries symbols)."""
    assert plane.pki is not None
    context = ssl.create_default_context(cafile=str(plane.pki.ca.cert))
    context.load_cert_chain(str(plane.pki.admin.cert), str(plane.pki.admin.key))
    connection = http.client.HTTPSConnection(
        "127.0.0.1", plane.api_port, context=context, timeout=seconds + 60
    )
    try:
        connection.request("GET", f"/debug/pprof/profile?seconds={int(seconds)}")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise BenchError(f"kube-apiserver profile: HTTP {response.status}: {body[:200]!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(body)


def stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    try:
        profiler.wait(timeout=60)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait()


def operator_requests(
    before: Counter[tuple[str, str]], after: Counter[tuple[str, str]], polls: int
) -> dict[tuple[str, str], int]:
    """API requests from t0 on that were not this script's: its creates of clients, rules
    and accounts (the operator creates none), its Table LISTs and /metrics reads are taken out.
    The controller-manager's few requests (a ServiceAccount per namespace, GC lists) stay in."""
    diff = after - before
    for plural in PLURAL.values():
        diff.pop(("POST", plural), None)  # the population (the operator creates none)
        key = ("LIST", plural)
        diff[key] -= min(diff[key], polls)  # at most one Table LIST per kind per poll
    diff[("GET", "")] -= min(diff[("GET", "")], 1)  # the /metrics read itself (no resource)
    return {key: n for key, n in diff.items() if n > 0}


def measure(
    plane: ControlPlane, api: Api, operator: ManagedProcess, options: Options, number: int = 1
) -> RoundResult:
    pid = operator.pid
    assert pid is not None
    helpers = [p.pid for p in plane.processes if p.pid is not None]
    named = {p.name: p.pid for p in plane.processes if p.pid is not None}
    docs = population(options)
    named_before = {name: cpu_seconds(p) for name, p in named.items()}
    bench_before = own_cpu_seconds([])
    cpu_before = cpu_seconds(pid)
    own_before, busy_before = own_cpu_seconds([pid, *helpers]), machine_busy_seconds()
    requests_before = api.request_counts()
    stopping = threading.Event()
    profiler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pprof")
    profiling: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="apply") as background:
        t0 = time.monotonic()
        applying = background.submit(create_population, plane, docs, stopping)
        if options.apiserver_profile is not None:
            profiling = profiler.submit(
                record_apiserver_profile,
                plane,
                options.apiserver_profile / f"apiserver-round-{number}.pprof",
                options.apiserver_profile_seconds,
            )
        try:
            first_ready, clients_ready, ready_seconds, polls = wait_until_ready(
                api, operator, applying, options, t0
            )
        finally:
            stopping.set()  # all created when all are Ready; else the round is over
        apply_seconds = applying.result() - t0
    # Ready is not the end of the work (kopf may still run handlers that change nothing, and
    # memory can still grow): the peak is read once the operator has gone idle.
    idle_seconds = (
        wait_until_idle(pid, min(SETTLE_LIMIT, max(0.0, t0 + options.timeout - time.monotonic())))
        - t0
    )
    rss, cpu = peak_rss_mb(pid), cpu_seconds(pid)
    own = own_cpu_seconds([pid, *helpers]) - own_before
    process_cpu = {name: cpu_seconds(p) - named_before[name] for name, p in named.items()}
    process_cpu["bench"] = own_cpu_seconds([]) - bench_before
    others = max(0.0, machine_busy_seconds() - busy_before - own)
    requests_loaded = api.request_counts()
    requests = operator_requests(requests_before, requests_loaded, polls)

    # At rest: what the operator costs the API server and the CPU with nothing to do (timers
    # on thousands of Ready objects, resyncs, watch restarts).
    idle_requests: dict[tuple[str, str], int] = {}
    idle_cpu = 0.0
    if options.idle_window > 0:
        cpu_rest = cpu_seconds(pid)
        time.sleep(options.idle_window)
        idle_cpu = cpu_seconds(pid) - cpu_rest
        idle_requests = operator_requests(requests_loaded, api.request_counts(), 0)
        rss = peak_rss_mb(pid)

    if profiling is not None:
        profiling.result()  # the profile's window may outlast the round; wait for the file
    profiler.shutdown()
    expected = {
        ("client-credentials", None): options.clients,
        ("client-verification", SERVER_NAMESPACE): options.clients,
        ("app-password", None): options.accounts,
        ("account-verification", SERVER_NAMESPACE): options.accounts,
    }
    for (role, namespace), want in expected.items():
        found = api.count_secrets(role, namespace)
        if found != want:
            raise BenchError(f"expected {want} {role} Secrets, found {found}")
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
        clients_ready_seconds=clients_ready,
        requests=requests,
        idle_requests=idle_requests,
        idle_window_seconds=options.idle_window,
        idle_cpu_seconds=idle_cpu,
        process_cpu=process_cpu,
    )


def wait_until_ready(
    api: Api,
    operator: ManagedProcess,
    applying: Future[float],
    options: Options,
    t0: float,
) -> tuple[float, float, float, int]:
    """Poll (one Table LIST per kind not yet all Ready) until every client, rule and account
    is Ready: (first client Ready, all clients Ready, all Ready, polls)."""
    wanted = {
        "oauth2clients": options.clients,
        "accessrules": options.rules,
        "serviceaccounts": options.accounts,
    }
    pending = {plural for plural, n in wanted.items() if n}
    first_ready: float | None = None
    clients_ready: float | None = None
    polls = 0
    deadline = t0 + options.timeout
    counts: dict[str, tuple[int, int]] = {}
    while True:
        if not operator.alive():
            raise BenchError("the operator exited during the round")
        if applying.done() and (error := applying.exception()) is not None:
            raise BenchError(f"applying the population failed: {error}")
        for plural in sorted(pending):
            try:
                counts[plural] = api.readiness(plural)
            except (OSError, http.client.HTTPException, ApiError):  # overloaded: poll again
                counts[plural] = (0, 0)
        now = time.monotonic()
        polls += 1
        clients = counts.get("oauth2clients", (options.clients, options.clients))
        if clients[1] and first_ready is None:
            first_ready = now - t0
        for plural in list(pending):
            if counts[plural] == (wanted[plural], wanted[plural]):
                pending.discard(plural)
                if plural == "oauth2clients":
                    clients_ready = now - t0
        if not pending:
            ready_seconds = now - t0
            break
        if now > deadline:
            missing = ", ".join(f"{counts[p][1]}/{wanted[p]} {p}" for p in sorted(pending))
            raise BenchError(f"timed out after {options.timeout:.0f}s: Ready {missing}")
        time.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - now)))
    return (
        first_ready if first_ready is not None else ready_seconds,
        clients_ready if clients_ready is not None else ready_seconds,
        ready_seconds,
        polls,
    )


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
    line = (
        f"apply {result.apply_seconds:6.2f}s  first Ready {result.first_ready_seconds:6.2f}s  "
        f"clients Ready {result.clients_ready_seconds:6.2f}s  "
        f"all Ready {result.ready_seconds:6.2f}s  idle {result.idle_seconds:6.2f}s  "
        f"{result.clients_per_second:5.1f} clients/s  "
        f"peak RSS {result.peak_rss_mb:6.1f} MB  CPU {result.cpu_seconds:6.2f}s "
        f"({result.load_cpu_seconds:.2f}s under load)  "
        f"others {result.other_cpu_seconds:.1f} CPU-s  "
        f"API requests {result.total_requests} ({result.writes} writes)  "
        + "CPU-s by process "
        + ", ".join(f"{name} {cpu:.1f}" for name, cpu in result.process_cpu.items())
    )
    if result.idle_window_seconds:
        line += (
            f"  at rest: {_per_minute(sum(result.idle_requests.values()), result)} req/min, "
            f"CPU {100 * result.idle_cpu_seconds / result.idle_window_seconds:.1f}% of a core"
        )
    return line


def _per_minute(count: float, result: RoundResult) -> float:
    return 60 * count / result.idle_window_seconds if result.idle_window_seconds else 0.0


def _request_table(
    results: Sequence[RoundResult], pick: str, scale: float = 1.0, floor: int = 1
) -> list[str]:
    """Median per (verb, resource) over rounds, largest first; rows below `floor` left out."""
    keys = sorted({key for r in results for key in getattr(r, pick)})
    rows = [
        (statistics.median([getattr(r, pick).get(key, 0) for r in results]) * scale, key)
        for key in keys
    ]
    return [
        f"      {verb:<7} {resource or '(non-resource)':<32} {count:10.1f}"
        for count, (verb, resource) in sorted(rows, reverse=True)
        if count >= floor
    ]


# Acceptance targets by population size: (all Ready seconds, peak RSS MB), 2-core machines.
TARGETS = {1000: (60.0, 250.0), 10000: (300.0, 500.0)}


def summarize(results: Sequence[RoundResult], options: Options) -> str:
    def median(values: Sequence[float]) -> float:
        return statistics.median(values)

    ready = median([r.ready_seconds for r in results])
    rss = median([r.peak_rss_mb for r in results])
    lines = [
        f"median of {len(results)} round(s), {options.clients} OAuth2Clients in "
        f"{options.namespaces} namespaces, {options.rules} AccessRules, "
        f"{options.accounts} ServiceAccounts:",
        f"  apply                {median([r.apply_seconds for r in results]):8.2f} s",
        f"  first Ready          {median([r.first_ready_seconds for r in results]):8.2f} s",
        f"  all clients Ready    {median([r.clients_ready_seconds for r in results]):8.2f} s",
        f"  all Ready            {ready:8.2f} s (clients, rules and accounts)",
        f"  operator idle        {median([r.idle_seconds for r in results]):8.2f} s "
        "(its CPU below 5% of a core)",
        f"  clients/s            {median([r.clients_per_second for r in results]):8.1f}",
        f"  operator peak RSS    {rss:8.1f} MB",
        f"  operator CPU         {median([r.cpu_seconds for r in results]):8.2f} s "
        f"({median([r.load_cpu_seconds for r in results]):.2f} s under load)",
        f"  other processes' CPU {median([r.other_cpu_seconds for r in results]):8.1f} s "
        "(machine noise while loading; ideally near 0)",
        "  CPU t0 → idle         "
        + ", ".join(
            f"{name} {median([r.process_cpu.get(name, 0.0) for r in results]):.1f} s"
            for name in results[0].process_cpu
        ),
        f"  API requests         {median([r.total_requests for r in results]):8.0f} "
        f"({median([r.writes for r in results]):.0f} writes; t0 until idle: "
        "apiserver_request_total less this script's applies and polls), by verb and resource:",
        *_request_table(results, "requests", floor=10),
    ]
    if options.idle_window > 0:
        at_rest = median([sum(r.idle_requests.values()) for r in results])
        cpu = median([r.idle_cpu_seconds for r in results])
        lines += [
            f"  at rest ({options.idle_window:.0f} s after idle): "
            f"{60 * at_rest / options.idle_window:.1f} API requests/min, operator CPU "
            f"{100 * cpu / options.idle_window:.1f}% of a core; per minute:",
            *_request_table(results, "idle_requests", scale=60 / options.idle_window, floor=0),
        ]
    target = TARGETS.get(options.clients)
    if target is None:
        lines.append(
            f"verdict: no target for {options.clients} clients (targets: "
            + ", ".join(f"{n} → {t:.0f}s, {m:.0f} MB" for n, (t, m) in TARGETS.items())
            + ")"
        )
        return "\n".join(lines)
    target_ready, target_rss = target
    ready_ok = ready <= target_ready
    rss_ok = rss <= target_rss
    lines.append(
        f"verdict: all Ready {ready:.1f}s {'<=' if ready_ok else '>'} {target_ready:.0f}s "
        f"{'PASS' if ready_ok else 'MISS'}; peak RSS {rss:.1f} MB "
        f"{'<=' if rss_ok else '>'} {target_rss:.0f} MB {'PASS' if rss_ok else 'MISS'}"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.operator_bench",
        description="Time until N OAuth2Clients (and R AccessRules, A ServiceAccounts) are "
        "Ready, the operator's peak memory and the API requests it makes.",
    )
    parser.add_argument("--clients", type=int, default=1000, help="OAuth2Clients (1000)")
    parser.add_argument("--namespaces", type=int, default=10, help="client namespaces (10)")
    parser.add_argument("--rules", type=int, default=5, help="AccessRules with `when` (5)")
    parser.add_argument(
        "--accounts", type=int, default=0, help="kubemint ServiceAccounts with app passwords (0)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each on a fresh cluster (3)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per round (300)")
    parser.add_argument(
        "--recheck-interval", type=float, default=30, help="operator re-check seconds (30)"
    )
    parser.add_argument(
        "--idle-window",
        type=float,
        default=0,
        help="after idle, measure the operator's API requests and CPU at rest this long (0: skip)",
    )
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="keep the operator logs here (round-N/)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record the operator with py-spy into this directory (speedscope JSON per round)",
    )
    parser.add_argument(
        "--apiserver-profile",
        type=Path,
        default=None,
        help="record kube-apiserver's CPU profile (pprof) from t0 into this directory "
        "(apiserver-round-N.pprof; read with `go tool pprof -top FILE`)",
    )
    parser.add_argument(
        "--apiserver-profile-seconds",
        type=float,
        default=60.0,
        help="how long the kube-apiserver profile records from t0 (60)",
    )
    parser.add_argument(
        "--no-finalizer-policy",
        dest="finalizer_policy",
        action="store_false",
        help="leave out the chart's MutatingAdmissionPolicy that sets the operator's finalizer "
        "at creation (the operator then adds it in a PATCH of its own, as before Kubernetes 1.36)",
    )
    args = parser.parse_args(argv)
    if args.clients < 1 or args.namespaces < 1 or args.rounds < 1 or args.rules < 0:
        parser.error("--clients, --namespaces and --rounds must be >= 1, --rules >= 0")
    if args.accounts < 0 or args.idle_window < 0:
        parser.error("--accounts and --idle-window must be >= 0")
    return Options(
        clients=args.clients,
        namespaces=min(args.namespaces, args.clients),
        rules=args.rules,
        rounds=args.rounds,
        timeout=args.timeout,
        recheck_interval=args.recheck_interval,
        log_dir=args.log_dir,
        accounts=args.accounts,
        idle_window=args.idle_window,
        profile=args.profile,
        finalizer_policy=args.finalizer_policy,
        apiserver_profile=args.apiserver_profile,
        apiserver_profile_seconds=args.apiserver_profile_seconds,
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
        f"{options.rules} AccessRules, {options.accounts} ServiceAccounts, "
        f"{options.rounds} round(s), {os.cpu_count()} CPUs, finalizer policy "
        f"{'on' if options.finalizer_policy else 'off'}",
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
