"""Pods the node-tier tests run: on the kubemint image, hardened like the chart's own pods."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kubemint.devcluster.release import Kubectl

WORKLOAD = Path(__file__).with_name("workload.py")
IMAGE = "docker.io/kubemint/kubemint:0.1.0"  # what the chart's defaults reference

SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def container(name: str, command: list[str], *mounts: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "securityContext": SECURITY,
        "resources": {"requests": {"cpu": "10m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *mounts],
    }


def pod(
    name: str,
    namespace: str,
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    *,
    service_account: str | None = None,
    init_containers: list[dict[str, Any]] | None = None,
    automount: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "automountServiceAccountToken": automount,
        "securityContext": {"fsGroup": 65532},
        "terminationGracePeriodSeconds": 2,
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}, *volumes],
    }
    if service_account:
        spec["serviceAccountName"] = service_account
    if init_containers:
        spec["initContainers"] = init_containers
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": spec,
    }


def workload_config_map(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "workload", "namespace": namespace},
        "data": {"workload.py": WORKLOAD.read_text()},
    }


WORKLOAD_VOLUME = {"name": "workload", "configMap": {"name": "workload"}}
WORKLOAD_MOUNT = {"name": "workload", "mountPath": "/work", "readOnly": True}


def apply(plane: Kubectl, *objects: dict[str, Any]) -> None:
    for obj in objects:
        plane.kubectl("apply", "-f", "-", stdin=json.dumps(obj))


def wait_ready(plane: Kubectl, namespace: str, name: str, timeout: float = 120) -> None:
    plane.kubectl(
        "wait",
        "--for=condition=Ready",
        "-n",
        namespace,
        f"pod/{name}",
        f"--timeout={int(timeout)}s",
        timeout=timeout + 10,
    )


def exec_in(
    plane: Kubectl, namespace: str, name: str, *argv: str, container: str | None = None
) -> str:
    where = ["-c", container] if container else []
    result = plane.kubectl("exec", "-n", namespace, name, *where, "--", *argv, timeout=60)
    return result.stdout


def status_lines(plane: Kubectl, namespace: str, name: str, container: str) -> list[dict[str, Any]]:
    """The JSON lines workload.py printed so far."""
    out = plane.kubectl("logs", "-n", namespace, name, "-c", container, timeout=30).stdout
    lines = []
    for line in out.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def last_status(plane: Kubectl, namespace: str, name: str, container: str) -> dict[str, Any]:
    statuses = [s for s in status_lines(plane, namespace, name, container) if "status" in s]
    return statuses[-1] if statuses else {"ok": 0, "failed": 0, "verified": 0, "errors": []}


def wait_for_ok(
    plane: Kubectl, namespace: str, name: str, container: str, count: int, timeout: float = 60
) -> dict[str, Any]:
    """Until the workload has `count` successful requests; its last status."""
    deadline = time.monotonic() + timeout
    status = last_status(plane, namespace, name, container)
    while time.monotonic() < deadline:
        status = last_status(plane, namespace, name, container)
        if status["ok"] >= count:
            return status
        time.sleep(1)
    raise AssertionError(f"{name}: fewer than {count} successful requests: {status}")
