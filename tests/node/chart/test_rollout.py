"""The release changing under load: `helm upgrade` rolls the token-server pods while a workload
asks for tokens in a loop (zero failures: maxUnavailable 0, readiness, PDB, the server's SIGTERM
drain); the leader operator pod deleted (the standby takes the Lease over within its time)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.node.chart import pods
from tests.node.chart.conftest import TIMINGS, Installed

LEASE_SECONDS = 15  # LeaseSettings.lease_duration


@pytest.fixture
def workspace(installed: Installed) -> Iterator[str]:
    name = f"r-{uuid.uuid4().hex[:8]}"
    installed.plane.kubectl("create", "namespace", name)
    installed.node.wait_for_service_account(name, "default")
    pods.apply(installed.plane, pods.workload_config_map(name))
    yield name
    installed.plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_helm_upgrade_rolls_the_token_servers_without_a_failed_token_request(
    installed: Installed, workspace: str
) -> None:
    plane, release = installed.plane, installed.release
    audience = f"https://{workspace}.roll.example"
    pods.apply(
        plane,
        {
            "apiVersion": "kubemint.io/v1alpha1",
            "kind": "OAuth2Client",
            "metadata": {"name": "loop", "namespace": workspace},
            "spec": {"audiences": [audience], "scopes": ["read"]},
        },
        {
            "apiVersion": "kubemint.io/v1alpha1",
            "kind": "AccessRule",
            "metadata": {"name": "loop", "namespace": workspace},
            "spec": {
                "audience": audience,
                "scopes": ["read"],
                "subjects": [{"kind": "OAuth2Client", "name": "loop"}],
            },
        },
    )
    plane.kubectl(
        "wait", "--for=condition=Ready", "-n", workspace, "oauth2client/loop", "--timeout=60s"
    )
    app = pods.container(
        "app",
        ["python", "/work/workload.py", "tokens", "--credentials", "/creds", "--interval", "0.1"],
        {"name": "credentials", "mountPath": "/creds", "readOnly": True},
        pods.WORKLOAD_MOUNT,
    )
    volumes = [
        {"name": "credentials", "secret": {"secretName": "loop-credentials"}},
        pods.WORKLOAD_VOLUME,
    ]
    pods.apply(plane, pods.pod("loop", workspace, [app], volumes))
    pods.wait_ready(plane, workspace, "loop")
    before = pods.wait_for_ok(plane, workspace, "loop", "app", 20)
    assert before["failed"] == 0, before["errors"]
    old_pods = {p["metadata"]["name"] for p in release.pods("token-server")}
    started = time.monotonic()
    release.upgrade({"tokenServer": {"podAnnotations": {"kubemint.test/roll": uuid.uuid4().hex}}})
    TIMINGS["helm upgrade --wait (token-server roll)"] = round(time.monotonic() - started, 1)
    # Until the old pods are gone (helm --wait returns when the new ones are Ready).
    deadline = time.monotonic() + 60
    while old_pods & {p["metadata"]["name"] for p in release.pods("token-server")}:
        assert time.monotonic() < deadline, "the old token-server pods did not go"
        time.sleep(1)
    time.sleep(2)
    after = pods.last_status(plane, workspace, "loop", "app")
    assert after["failed"] == 0, after["errors"]
    assert after["ok"] - before["ok"] > 50  # it asked all through the roll


def test_the_standby_operator_takes_over_within_the_lease_when_the_leader_pod_is_deleted(
    installed: Installed,
) -> None:
    plane, release = installed.plane, installed.release
    lease_name = "kubemint-operator"

    renewals: dict[str, str] = {}  # holder -> its last renewTime seen

    def holder() -> str:
        out = plane.kubectl("get", "lease", "-n", release.namespace, lease_name, "-o", "json")
        spec = json.loads(out.stdout)["spec"]
        identity = str(spec.get("holderIdentity") or "")
        if identity and spec.get("renewTime"):
            renewals[identity] = spec["renewTime"]
        return identity

    def pod_of(identity: str) -> str:
        return identity.rsplit("-", 1)[0]  # holderIdentity is <pod name>-<random suffix>

    operators = {p["metadata"]["name"] for p in release.pods("operator")}
    leader = pod_of(holder())
    assert leader in operators, (leader, operators)
    (standby,) = operators - {leader}
    old_identity = holder()
    deleted = time.monotonic()
    plane.kubectl("delete", "pod", "-n", release.namespace, leader, "--wait=false")
    # The old leader renews until its work has stopped (kopf's shutdown), then releases the
    # Lease; killed, it stops renewing. Either way another replica must hold the Lease within
    # the Lease time of the old leader's last renewal, and the whole change within the pod's
    # grace period (30 s) plus the Lease time. That replica is the standby, or the pod the
    # Deployment started in the leader's place when it won the race for the released Lease.
    while (now := holder()) in ("", old_identity):
        assert time.monotonic() - deleted < 30 + LEASE_SECONDS, (
            f"lease still held by the deleted leader {now!r}" if now else "lease held by nobody"
        )
        time.sleep(0.2)
    current = {p["metadata"]["name"] for p in release.pods("operator")}
    assert pod_of(now) in current - {leader}, (now, standby, current)
    took = time.monotonic() - deleted
    TIMINGS["operator leader deleted to another replica holding the Lease"] = round(took, 1)
    last_renewal = datetime.fromisoformat(renewals[old_identity].replace("Z", "+00:00"))
    after_renewal = (datetime.now(UTC) - last_renewal).total_seconds()
    TIMINGS["old leader's last renewal to another replica holding the Lease"] = round(
        after_renewal, 1
    )
    assert after_renewal < LEASE_SECONDS + 2, after_renewal  # + the standby's retry interval
    # The new leader acts: a new client becomes Ready.
    namespace = f"l-{uuid.uuid4().hex[:8]}"
    plane.kubectl("create", "namespace", namespace)
    try:
        pods.apply(
            plane,
            {
                "apiVersion": "kubemint.io/v1alpha1",
                "kind": "OAuth2Client",
                "metadata": {"name": "after", "namespace": namespace},
                "spec": {"audiences": ["https://after.example"], "scopes": ["read"]},
            },
        )
        plane.kubectl(
            "wait", "--for=condition=Ready", "-n", namespace, "oauth2client/after", "--timeout=60s"
        )
    finally:
        plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    # The Deployment replaced the deleted pod: a standby again.
    deadline = time.monotonic() + 90
    while len([p for p in release.pods("operator") if _ready(p)]) < 2:
        assert time.monotonic() < deadline, release.describe()
        time.sleep(1)


def _ready(pod: dict[str, object]) -> bool:
    status = pod.get("status", {})
    conditions = status.get("conditions", []) if isinstance(status, dict) else []
    metadata = pod.get("metadata", {})
    deleting = isinstance(metadata, dict) and "deletionTimestamp" in metadata
    return not deleting and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
