"""kubemint's own processes next to a local control plane: the operator (and later the server).

They run as real `python -m kubemint …` subprocesses with a kubeconfig, exactly as in a pod
with KUBECONFIG instead of in-cluster credentials, and die with their parent like the
control plane's processes.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from kubemint.devcluster.controlplane import ControlPlane, ControlPlaneError, free_port
from kubemint.devcluster.processes import ManagedProcess


def operator_process(
    plane: ControlPlane,
    *,
    namespace: str,
    issuer: str,
    name: str = "operator",
    recheck_interval: float = 30.0,
    lease_name: str = "kubemint-operator",
    extra_env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> ManagedProcess:
    """A `kubemint operator` process (not started) configured for this control plane."""
    env = {
        **os.environ,
        "KUBECONFIG": str(plane.kubeconfig),
        "KUBEMINT_NAMESPACE": namespace,
        "KUBEMINT_ISSUER": issuer,
        "KUBEMINT_RECHECK_INTERVAL": str(recheck_interval),
        "KUBEMINT_LEASE_NAME": lease_name,
        "POD_NAME": name,
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    log = (log_dir or plane.workdir) / f"{name}.log"
    return ManagedProcess(name, [sys.executable, "-m", "kubemint", "operator"], log, env)


def token_server_process(
    plane: ControlPlane,
    *,
    namespace: str,
    issuer: str,
    port: int,
    name: str = "token-server",
    extra_env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    metrics_port: int | None = None,
) -> ManagedProcess:
    """A `kubemint token-server` process (not started) on 127.0.0.1:`port`, its /metrics on
    `metrics_port` (a free one by default; see `metrics_url`)."""
    env = {
        **os.environ,
        "KUBECONFIG": str(plane.kubeconfig),
        "KUBEMINT_NAMESPACE": namespace,
        "KUBEMINT_ISSUER": issuer,
        "KUBEMINT_HOST": "127.0.0.1",
        "KUBEMINT_PORT": str(port),
        "KUBEMINT_METRICS_PORT": str(metrics_port or free_port()),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    log = (log_dir or plane.workdir) / f"{name}.log"
    return ManagedProcess(name, [sys.executable, "-m", "kubemint", "token-server"], log, env)


def metrics_url(process: ManagedProcess) -> str:
    """Where a token server process made by `token_server_process` serves /metrics."""
    env = process.env or {}
    return f"http://127.0.0.1:{env['KUBEMINT_METRICS_PORT']}/metrics"


def wait_for_http(url: str, process: ManagedProcess, timeout: float = 90) -> None:
    """Block until `url` answers 200 (e.g. /readyz), failing early if the process died. The
    default leaves a loaded 2-core machine time: token servers took 25-37 s there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise ControlPlaneError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 — loopback
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise ControlPlaneError(f"{url} did not become ready:\n{process.log_tail()}")


def wait_for_leader(
    plane: ControlPlane, namespace: str, lease_name: str, holder_prefix: str, timeout: float = 60
) -> None:
    """Block until the Lease names a holder starting with `holder_prefix` (its POD_NAME)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = plane.kubectl(
            "get",
            "lease",
            lease_name,
            "-n",
            namespace,
            "-o",
            "jsonpath={.spec.holderIdentity}",
            check=False,
        )
        if result.returncode == 0 and result.stdout.startswith(holder_prefix + "-"):
            return
        time.sleep(0.2)
    raise ControlPlaneError(f"{holder_prefix} did not become leader of {namespace}/{lease_name}")
