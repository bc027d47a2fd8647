"""Start a node, print its identifiers as one JSON line, then run until killed. Used by
test_teardown.py as the "test run" that dies."""

from __future__ import annotations

import json
import time

from kubemint.devcluster.node import NodeCluster


def main() -> None:
    with NodeCluster(log=False) as node:
        # One pod, so there is a pod network namespace, a shim and a container to leak.
        node.wait_for_service_account("default", "default")
        node.apply(f"""\
apiVersion: v1
kind: Pod
metadata: {{name: sleeper, namespace: default}}
spec:
  containers:
  - {{name: sleeper, image: {node.images.busybox.name}, imagePullPolicy: Never,
      command: ["sleep", "3600"]}}
""")
        node.wait_for_pod("default", "sleeper")
        print(
            json.dumps(
                {
                    "state_dir": str(node.state_dir),
                    "cgroup_name": node.cgroup_name,
                    "sandbox_pid": node.sandbox_pid,
                }
            ),
            flush=True,
        )
        while True:
            time.sleep(1)


if __name__ == "__main__":
    main()
