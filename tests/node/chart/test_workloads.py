"""Workloads as the README tells users to run them, on a real node with the chart's release:
a mounted client Secret with the `kubemint token --watch` sidecar through a secret rotation, a
pod with only a projected ServiceAccount token, a resource server through a signing-key
rotation."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config, watch

from tests.node.chart import pods
from tests.node.chart.conftest import TIMINGS, Installed

OVERLAP = 40  # seconds; the node's kubelet (syncFrequency 10s) propagates in about 10-15 s
# File times come from the kernel's coarse clock (a tick, a few ms, behind time.time()).
CLOCK_SLACK = 0.05


@pytest.fixture
def workspace(installed: Installed) -> Iterator[str]:
    name = f"w-{uuid.uuid4().hex[:8]}"
    installed.plane.kubectl("create", "namespace", name)
    installed.node.wait_for_service_account(name, "default")
    pods.apply(installed.plane, pods.workload_config_map(name))
    yield name
    installed.plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _kubemint(kind: str, name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubemint.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _client(installed: Installed, namespace: str, name: str, **spec: Any) -> str:
    audience = f"https://{namespace}.{name}.example"
    pods.apply(
        installed.plane,
        _kubemint("OAuth2Client", name, namespace, audiences=[audience], scopes=["read"], **spec),
        _kubemint(
            "AccessRule",
            name,
            namespace,
            audience=audience,
            scopes=["read"],
            subjects=[{"kind": "OAuth2Client", "name": name}],
        ),
    )
    installed.plane.kubectl(
        "wait", "--for=condition=Ready", "-n", namespace, f"oauth2client/{name}", "--timeout=60s"
    )
    return audience


def _secret_volume(name: str) -> dict[str, Any]:
    return {"name": "credentials", "secret": {"secretName": name}}


CREDENTIALS_MOUNT = {"name": "credentials", "mountPath": "/creds", "readOnly": True}


def test_a_rotated_client_secret_reaches_the_pod_and_no_token_request_fails(
    installed: Installed, workspace: str
) -> None:
    plane = installed.plane
    # Rotation 45 s after creation, the previous secret valid 40 s more.
    _client(installed, workspace, "app", secret={"rotateEvery": "45s", "overlap": f"{OVERLAP}s"})
    sidecar = pods.container(
        "token",
        [
            "kubemint",
            "token",
            "--credentials",
            "/creds",
            "--scope",
            "read",
            "--watch",
            "--out",
            "/tokens/token",
        ],
        CREDENTIALS_MOUNT,
        {"name": "tokens", "mountPath": "/tokens"},
    )
    sidecar["restartPolicy"] = "Always"  # a native sidecar: starts first, stops last
    app = pods.container(
        "app",
        ["python", "/work/workload.py", "tokens", "--credentials", "/creds", "--scope", "read"],
        CREDENTIALS_MOUNT,
        pods.WORKLOAD_MOUNT,
        {"name": "tokens", "mountPath": "/tokens", "readOnly": True},
    )
    pods.apply(
        plane,
        pods.pod(
            "app",
            workspace,
            [app],
            [_secret_volume("app-credentials"), pods.WORKLOAD_VOLUME, _empty("tokens")],
            init_containers=[sidecar],
        ),
    )
    pods.wait_ready(plane, workspace, "app")
    pods.wait_for_ok(plane, workspace, "app", "app", 5)
    first_token = pods.exec_in(plane, workspace, "app", "cat", "/tokens/token", container="app")
    # The kubelet's propagation, from the API server's write to the swap in the pod's volume.
    # Start: the moment this test receives the rotation as a live watch event (the API
    # server sends a write to its watchers within milliseconds, so this trails the write by
    # that little). Polling the Secret, as before, trailed it by a kubectl round trip and a
    # sleep, as long as a quick propagation itself: the figure could read 0.0 s. A rotation
    # made before the watch began is its starting state, not timed: the test then waits for
    # the next one. End: the ctime of the volume's `..data` symlink, which the kubelet
    # renames into place (workload.py), for the swap that brought this secret (matched by
    # its digest), rather than when the workload's request loop happened to look. Both are
    # this host's clock (the pod's is the host's).
    old, new, rotated_at = _watch_rotation(plane, workspace, "app-credentials", timeout=90)
    digest = hashlib.sha256(new["client-secret"].encode()).hexdigest()[:12]
    changed = _wait_event(plane, workspace, "app", "secret-changed", timeout=OVERLAP, new=digest)
    swapped = changed["swapped"]
    assert swapped is not None, "the pod's Secret volume has no ..data symlink"
    assert swapped <= changed["t"] + CLOCK_SLACK, changed  # swapped before the workload saw it
    propagation = swapped - rotated_at
    TIMINGS["kubelet Secret propagation (syncFrequency 10s)"] = round(propagation, 2)
    # Negative: the file changed before this test saw the write, so the start is not the
    # write's time (a watch event that came late, or a swap of an earlier change).
    assert propagation > -CLOCK_SLACK, f"the file changed {-propagation:.3f} s before the write"
    assert propagation < OVERLAP, f"the kubelet took {propagation:.1f} s"
    # The sidecar noticed the swap and wrote a token obtained with the new secret.
    deadline = time.monotonic() + 15
    while (
        pods.exec_in(plane, workspace, "app", "cat", "/tokens/token", container="app")
        == first_token
    ):
        assert time.monotonic() < deadline, "the sidecar did not refresh after the swap"
        time.sleep(1)
    # The old secret stops working at the end of the overlap; the new one keeps working.
    url, client_id = old["token-url"], old["client-id"]
    deadline = time.monotonic() + OVERLAP + 30
    while installed.token_status(url, client_id, old["client-secret"])[0] != 401:
        assert time.monotonic() < deadline, "the old secret still works after the overlap"
        time.sleep(2)
    assert installed.token_status(url, client_id, new["client-secret"])[0] == 200
    status = pods.last_status(plane, workspace, "app", "app")
    assert status["failed"] == 0, status["errors"]
    assert status["ok"] > 100  # requests all through the overlap
    sidecar_log = plane.kubectl("logs", "-n", workspace, "app", "-c", "token").stdout
    assert "the credentials changed" in sidecar_log, sidecar_log
    assert "could not refresh" not in sidecar_log, sidecar_log


def test_a_pod_with_only_a_projected_service_account_token_gets_tokens(
    installed: Installed, workspace: str
) -> None:
    plane, release = installed.plane, installed.release
    audience = f"https://{workspace}.pods.example"
    plane.kubectl("create", "serviceaccount", "worker", "-n", workspace)
    pods.apply(
        plane,
        _kubemint(
            "OAuth2Client",
            "pods",
            workspace,
            audiences=[audience],
            authMethod="none",
            scopes=["read"],
        ),
        _kubemint(
            "ServiceAccount",
            "pod-identity",
            workspace,
            clients=["pods"],
            federation={"kubernetes": [{"serviceAccountName": "worker"}]},
        ),
        _kubemint(
            "AccessRule",
            "pods",
            workspace,
            audience=audience,
            scopes=["read"],
            subjects=[{"kind": "ServiceAccount", "name": "pod-identity"}],
        ),
    )
    plane.kubectl(
        "wait",
        "--for=condition=Ready",
        "-n",
        workspace,
        "serviceaccounts.kubemint.io/pod-identity",
        "--timeout=60s",
    )
    projected = {
        "name": "kubemint-token",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "path": "token",
                        "audience": release.issuer,  # the kubemint issuer
                        "expirationSeconds": 3600,
                    }
                }
            ]
        },
    }
    token_file = "/var/run/secrets/kubemint/token"
    app = pods.container(
        "app",
        [
            "python",
            "/work/workload.py",
            "tokens",
            "--projected-token",
            token_file,
            "--client-id",
            f"{workspace}.pods",
            "--token-url",
            release.issuer + "/oauth2/token",
            "--verify-issuer",
            release.issuer,
            "--audience",
            audience,
            "--interval",
            "1",
        ],
        {"name": "kubemint-token", "mountPath": "/var/run/secrets/kubemint", "readOnly": True},
        pods.WORKLOAD_MOUNT,
    )
    manifest = pods.pod(
        "zero-secrets",
        workspace,
        [app],
        [projected, pods.WORKLOAD_VOLUME],
        service_account="worker",
    )
    pods.apply(plane, manifest)
    pods.wait_ready(plane, workspace, "zero-secrets")
    pods.wait_for_ok(plane, workspace, "zero-secrets", "app", 3, timeout=60)
    spec = json.loads(
        plane.kubectl("get", "pod", "-n", workspace, "zero-secrets", "-o", "json").stdout
    )["spec"]
    assert not [v for v in spec["volumes"] if "secret" in v], spec["volumes"]
    assert spec["automountServiceAccountToken"] is False
    token = pods.exec_in(
        plane,
        workspace,
        "zero-secrets",
        *("kubemint", "token", "--projected-token", token_file, "--client-id"),
        *(f"{workspace}.pods", "--token-url", release.issuer + "/oauth2/token"),
    ).strip()
    claims = json.loads(
        pods.exec_in(
            plane,
            workspace,
            "zero-secrets",
            *("kubemint", "verify", "--issuer", release.issuer, "--audience", audience, token),
        )
    )
    assert claims["sub"] == f"kubemint:serviceaccount:{workspace}:pod-identity"


def test_a_resource_server_pod_verifies_through_a_signing_key_rotation(
    installed: Installed, workspace: str
) -> None:
    plane, release = installed.plane, installed.release
    audience = _client(installed, workspace, "caller")
    app = pods.container(
        "app",
        [
            "python",
            "/work/workload.py",
            "tokens",
            "--credentials",
            "/creds",
            "--verify-issuer",
            release.issuer,
            "--audience",
            audience,
            "--interval",
            "0.2",
        ],
        CREDENTIALS_MOUNT,
        pods.WORKLOAD_MOUNT,
    )
    pods.apply(
        plane,
        pods.pod(
            "verifier",
            workspace,
            [app],
            [_secret_volume("caller-credentials"), pods.WORKLOAD_VOLUME],
        ),
    )
    pods.wait_ready(plane, workspace, "verifier")
    before = pods.wait_for_ok(plane, workspace, "verifier", "app", 10)
    assert before["failed"] == 0, before["errors"]
    active = _active_kid(installed)
    plane.kubectl(
        "annotate",
        "signingkey",
        "default",
        "-n",
        release.namespace,
        f"kubemint.io/rotate={time.time():.0f}",
        "--overwrite",
    )
    deadline = time.monotonic() + 60
    while _active_kid(installed) == active:
        assert time.monotonic() < deadline, "the signing key did not rotate"
        time.sleep(0.5)
    new = _active_kid(installed)
    deadline = time.monotonic() + 60
    while new not in (status := pods.last_status(plane, workspace, "verifier", "app"))["kids"]:
        assert time.monotonic() < deadline, f"no token signed by the new key verified: {status}"
        time.sleep(1)
    time.sleep(3)  # and it goes on
    status = pods.last_status(plane, workspace, "verifier", "app")
    assert status["failed"] == 0, status["errors"]
    assert active in status["kids"]
    assert new in status["kids"]
    assert status["verified"] > before["verified"]


def _active_kid(installed: Installed) -> str:
    out = installed.plane.kubectl(
        "get", "signingkey", "default", "-n", installed.release.namespace, "-o", "json"
    ).stdout
    return str(json.loads(out)["status"]["active"]["kid"])


def _empty(name: str) -> dict[str, Any]:
    return {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}


def _wait_event(
    plane: Any, namespace: str, pod: str, event: str, timeout: float, **fields: Any
) -> dict[str, Any]:
    """The first line of the app container's log for `event` that carries `fields`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in pods.status_lines(plane, namespace, pod, "app"):
            if line.get("event") == event and fields.items() <= line.items():
                return line
        time.sleep(0.5)
    raise AssertionError(f"{pod}: no {event} within {timeout:.0f} s")


def _watch_rotation(
    plane: Any, namespace: str, name: str, timeout: float
) -> tuple[dict[str, str], dict[str, str], float]:
    """Watch the client Secret `name` until its client secret changes: its data before and
    after, and this host's time when the change arrived. The watch (no resourceVersion) opens
    with the Secret as it is, then sends each write as it is made."""
    api = config.new_client_from_config(str(plane.kubeconfig))  # type: ignore[no-untyped-call]
    stream = watch.Watch()
    before: dict[str, str] | None = None
    try:
        for event in stream.stream(
            client.CoreV1Api(api).list_namespaced_secret,
            namespace,
            field_selector=f"metadata.name={name}",
            timeout_seconds=int(timeout),
        ):
            received = time.time()
            data = {
                k: base64.b64decode(v).decode() for k, v in (event["object"].data or {}).items()
            }
            if before is None:
                before = data
            elif data["client-secret"] != before["client-secret"]:
                return before, data, received
    finally:
        stream.stop()
        api.close()
    raise AssertionError(f"the client secret of {namespace}/{name} was not rotated")
