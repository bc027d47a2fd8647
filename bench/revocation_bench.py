"""Revocation-store benchmark: etcd growth and latency per revocation, hourly buckets vs now.

Each round starts a fresh local control plane (etcd + kube-apiserver) per design and has one
client revoke N tokens (2,000 by default) that all expire in the same hour, as 15-minute
tokens minted together do, through the real API server:

- **buckets** (the previous store, reproduced here exactly as it wrote): every revocation is
  a merge patch adding `jti: exp` to the ConfigMap `kubemint-revoked-<hour>`, creating it on
  404. Each patch rewrites the whole, growing object, and etcd keeps every revision until the
  API server compacts (every 5 minutes).
- **entries** (`kubemint.store.revocations`, quota lifted above N): every revocation creates
  its own small ConfigMap. The worst case for the store's size: no watermark ever helps.
- **watermark** (the default quota of 100): 100 entries, then the client's watermark; the
  other 1,900 tokens were issued in the watermark's second (as tokens minted together are),
  so they are covered by it and write nothing.
- **moves** (the watermark's worst case): every revocation is of a token issued after the
  watermark, so every one moves it (a read and a conditional merge patch of one small
  object). A real client can cause at most one such move per second (`iat` has one-second
  resolution, and a token must be issued before it is revoked), and the token server's
  per-client write rate caps it further (60 a minute); here the clock is advanced by a
  second per revocation to measure 2,000 moves without waiting for them.

Figures per design: etcd's database growth (`etcd_mvcc_db_total_size_in_use_in_bytes`, the
pages in use; `etcd_mvcc_db_total_size_in_bytes`, the file, grows in coarse steps) over the
N revocations, bytes per revocation, the bytes of the largest revocation object stored, and
the latency of one revocation's store writes (median, p99). Medians over rounds; ratios to
the buckets design. The token server's HTTP endpoint adds its own (constant) cost on top;
this measures what the store costs, which is what grew.

Run `make bench-revocation` (or `python -m bench.revocation_bench --help`). Exit status 0 when
every round completed (a measurement), 1 when one failed, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubemint.devcluster import ControlPlane, ControlPlaneError, resolve_binaries
from kubemint.store.revocations import (
    DEFAULT_QUOTA,
    SELECTOR,
    Plan,
    RevocationIndex,
    RevocationStore,
    Target,
)

NAMESPACE = "kubemint-system"
CLIENT = "tenant.app"
DESIGNS = ("buckets", "entries", "watermark", "moves")
IN_USE = "etcd_mvcc_db_total_size_in_use_in_bytes"
FILE = "etcd_mvcc_db_total_size_in_bytes"


@dataclass
class Result:
    design: str
    revocations: int
    writes: int  # store writes made (the watermark design skips revocations already covered)
    in_use_growth: int  # bytes
    file_growth: int  # bytes
    largest_object: int  # bytes of the largest revocation ConfigMap, as JSON
    objects: int
    latency_ms: list[float]

    @property
    def per_revocation(self) -> float:
        return self.in_use_growth / self.revocations

    @property
    def p50(self) -> float:
        return statistics.median(self.latency_ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latency_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def etcd_sizes(plane: ControlPlane) -> dict[str, int]:
    with urllib.request.urlopen(plane.etcd_url + "/metrics", timeout=10) as response:  # noqa: S310 — loopback
        text = response.read().decode()
    sizes = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in (IN_USE, FILE):
            sizes[name] = int(float(value))
    return sizes


def legacy_revoke(core: client.CoreV1Api, jti: str, exp: int) -> None:
    """The previous store's write, as kubemint wrote it (merge patch into the hour's bucket)."""
    name = f"kubemint-revoked-{exp // 3600}"
    patch = {"data": {jti: str(exp)}}
    try:
        core.patch_namespaced_config_map(name, NAMESPACE, patch)
        return
    except ApiException as exc:
        if exc.status != 404:
            raise
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=NAMESPACE,
            labels={"kubemint.io/role": "revocations", "app.kubernetes.io/managed-by": "kubemint"},
        ),
        data={jti: str(exp)},
    )
    core.create_namespaced_config_map(NAMESPACE, body)


def _writer(design: str, api: client.ApiClient, core: client.CoreV1Api) -> Callable[[int], bool]:
    """A function doing revocation number i; True when it wrote to the store."""
    hour_start = (int(time.time()) // 3600 + 2) * 3600  # every token expires in one hour
    exp = hour_start + 1800
    if design == "buckets":

        def legacy(i: int) -> bool:
            legacy_revoke(core, secrets.token_urlsafe(16), exp)
            return True

        return legacy
    quota = {"watermark": DEFAULT_QUOTA, "moves": 0}.get(design, 10**9)
    store = RevocationStore(api, NAMESPACE, RevocationIndex(), quota=quota)
    if design == "moves":
        base = int(time.time())

        def move(i: int) -> bool:  # a token issued, then revoked, i seconds later
            target = Target(secrets.token_urlsafe(16), exp, base + i, CLIENT, "bench-uid")
            what = store.plan(target, base + i)
            store.write(target, what, base + i)
            return what is not Plan.NOTHING

        return move

    def current(i: int) -> bool:
        now = time.time()
        target = Target(secrets.token_urlsafe(16), exp, int(now), CLIENT, "bench-uid")
        what = store.plan(target, now)
        store.write(target, what, now)
        return what is not Plan.NOTHING

    return current


def run_design(design: str, count: int) -> Result:
    with ControlPlane(resolve_binaries(), controller_manager=False) as plane:
        api = config.new_client_from_config(str(plane.kubeconfig))  # type: ignore[no-untyped-call]
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        revoke = _writer(design, api, core)
        time.sleep(1.0)  # let the API server's own start-up writes settle
        before = etcd_sizes(plane)
        latency, writes = [], 0
        for i in range(count):
            started = time.perf_counter()
            writes += revoke(i)
            latency.append((time.perf_counter() - started) * 1000)
        after = etcd_sizes(plane)
        listing = core.list_namespaced_config_map(
            NAMESPACE, label_selector=SELECTOR, _preload_content=False
        )
        items = json.loads(listing.data)["items"]
        largest = max(len(json.dumps(i, separators=(",", ":"))) for i in items)
        api.close()
        return Result(
            design,
            count,
            writes,
            after[IN_USE] - before[IN_USE],
            after[FILE] - before[FILE],
            largest,
            len(items),
            latency,
        )


def describe(r: Result) -> str:
    return (
        f"  {r.design:9}  etcd +{r.in_use_growth / 1e6:8.2f} MB in use "
        f"(+{r.file_growth / 1e6:7.2f} MB file), {r.per_revocation:9.0f} B/revocation, "
        f"{r.writes:5} writes, {r.objects:5} objects, largest {r.largest_object:8} B, "
        f"latency p50 {r.p50:6.2f} ms p99 {r.p99:7.2f} ms"
    )


def summarize(results: Sequence[Result], designs: Sequence[str]) -> str:
    def med(design: str, key: Callable[[Result], float]) -> float:
        return statistics.median(key(r) for r in results if r.design == design)

    lines = [f"median of {sum(r.design == 'buckets' for r in results)} round(s):"]
    base = med("buckets", lambda r: r.in_use_growth)
    base_p50 = med("buckets", lambda r: r.p50)
    for design in designs:
        growth = med(design, lambda r: r.in_use_growth)
        p50 = med(design, lambda r: r.p50)
        lines.append(
            f"  {design:9}  etcd +{growth / 1e6:8.2f} MB in use "
            f"({med(design, lambda r: r.per_revocation):8.0f} B/revocation, "
            f"{growth / base:6.3f}x buckets); largest object "
            f"{med(design, lambda r: r.largest_object):8.0f} B; latency p50 {p50:6.2f} ms "
            f"({p50 / base_p50:5.2f}x buckets), p99 {med(design, lambda r: r.p99):7.2f} ms"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.revocation_bench",
        description="etcd growth and latency per revocation: hourly buckets vs entries.",
    )
    parser.add_argument("--revocations", type=int, default=2000, help="by one client (2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, fresh clusters (3)")
    parser.add_argument(
        "--designs", default=",".join(DESIGNS), help=f"comma-separated ({','.join(DESIGNS)})"
    )
    args = parser.parse_args(argv)
    if args.revocations < 1 or args.rounds < 1:
        parser.error("--revocations and --rounds must be >= 1")
    return args


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    designs = [d for d in args.designs.split(",") if d]
    if "buckets" not in designs or set(designs) - set(DESIGNS):
        print(f"--designs must include buckets (the baseline) and name only {DESIGNS}")
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"revocation benchmark: {args.revocations} revocations by one client, "
        f"{args.rounds} round(s), {os.cpu_count()} CPUs",
        flush=True,
    )
    results: list[Result] = []
    try:
        for number in range(1, args.rounds + 1):
            print(f"round {number}:", flush=True)
            for design in designs:
                result = run_design(design, args.revocations)
                results.append(result)
                print(describe(result), flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ControlPlaneError, ApiException, OSError) as exc:
        print(f"a round failed: {exc}", file=sys.stderr)
        return 1
    print(summarize(results, designs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
