"""Node-tier benchmark: time to a Ready node, and how long a Secret update takes to reach a
running pod's mounted file.

Each round starts a fresh `kubemint.devcluster.node.NodeCluster` (binaries and images already
cached: `make node-binaries`), records its start milestones (sandbox, control plane, images
imported, node Ready, CoreDNS available), runs one busybox pod mounting a Secret, patches the
Secret `--updates` times and measures each time until `kubectl exec cat` shows the new value
(polled every 0.2 s, so the figure includes up to 0.2 s plus one exec), then stops the node and
times the teardown. Medians over rounds; the Secret figures are bounded by the kubelet's
`syncFrequency` (10s here, see kubelet.py).

Run `make bench-node` (or `python -m bench.node_bench --help`). Exit status 0 when every round
completed (a measurement), 1 when one failed, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from types import FrameType

from kubemint.devcluster.controlplane import ControlPlaneError
from kubemint.devcluster.node import NodeCluster
from kubemint.devcluster.node.kubelet import SYNC_FREQUENCY

MILESTONES = ("sandbox", "control plane", "images imported", "node Ready", "CoreDNS available")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.node_bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="fresh nodes to start (default 3)")
    parser.add_argument("--updates", type=int, default=3, help="Secret updates per round")
    return parser.parse_args(argv)


def secret_delays(node: NodeCluster, updates: int) -> list[float]:
    node.wait_for_service_account("default", "default")
    node.apply(f"""\
apiVersion: v1
kind: Secret
metadata: {{name: bench, namespace: default}}
stringData: {{value: "v0"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: bench, namespace: default}}
spec:
  containers:
  - name: bench
    image: {node.images.busybox.name}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts: [{{name: s, mountPath: /s, readOnly: true}}]
  volumes: [{{name: s, secret: {{secretName: bench}}}}]
""")
    node.wait_for_pod("default", "bench")
    delays = []
    for number in range(1, updates + 1):
        value = f"v{number}"
        patch = '{"stringData":{"value":"' + value + '"}}'
        node.plane.kubectl("patch", "secret", "bench", "-p", patch)
        changed = time.monotonic()
        while True:
            seen = node.plane.kubectl("exec", "bench", "--", "cat", "/s/value", check=False)
            if seen.stdout == value:
                break
            if time.monotonic() - changed > 180:
                raise ControlPlaneError(f"Secret update {value} not visible after 180 s")
            time.sleep(0.2)
        delays.append(time.monotonic() - changed)
    return delays


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"node benchmark: {args.rounds} round(s), {args.updates} Secret update(s) each")
    starts: list[dict[str, float]] = []
    delays: list[float] = []
    teardowns: list[float] = []
    try:
        for number in range(1, args.rounds + 1):
            node = NodeCluster(log=False)
            with node:
                starts.append(node.timings)
                round_delays = secret_delays(node, args.updates)
                delays += round_delays
                stopping = time.monotonic()
            teardowns.append(time.monotonic() - stopping)
            milestones = ", ".join(f"{m} {node.timings[m]:.1f}s" for m in MILESTONES)
            shown = ", ".join(f"{d:.1f}s" for d in round_delays)
            print(
                f"round {number}: {milestones}; Secret → file {shown}; "
                f"teardown {teardowns[-1]:.1f}s",
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ControlPlaneError, OSError) as exc:
        print(f"a round failed: {exc}", file=sys.stderr)
        return 1
    print("medians (seconds since start, binaries and images cached):")
    for milestone in MILESTONES:
        print(f"  {milestone:<18} {statistics.median(s[milestone] for s in starts):6.1f}")
    print(
        f"  Secret update → mounted file: median {statistics.median(delays):.1f}s, "
        f"max {max(delays):.1f}s over {len(delays)} (syncFrequency {SYNC_FREQUENCY})"
    )
    print(f"  teardown           {statistics.median(teardowns):6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
