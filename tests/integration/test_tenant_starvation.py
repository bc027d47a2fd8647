"""SigningKeys must not starve the operator (issue 10 finding 4).

Generating an RSA-4096 key takes seconds of CPU, and loading one (to check its size) most of a
second; both ran on kopf's event loop, so while the admin's RSA keys were being made no other
object was handled: another tenant's client took minutes to become Ready. Keys are now made
off the loop, RSA schedules have a floor, and manual rotations are rate-limited.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubemint.api.meta import parse_time
from kubemint.devcluster import ControlPlane
from tests.integration.conftest import RunningOperator, own_operator
from tests.integration.kube_helpers import apply, condition, custom, get, wait_for
from tests.integration.tenants import TenantFactory

RSA_KEYS = 6  # each needs two RSA-4096 keys (active and next) at once
FASTEST_RSA = {"every": "1h", "prePublish": "30m", "retainAfter": "1h"}  # the floor for RSA
MANUAL_INTERVAL = 10  # seconds between manual rotations, for this module's operator


@pytest.fixture(scope="module")
def operator(
    cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    """This module's operator: fast re-checks, and manual rotations limited to one per
    MANUAL_INTERVAL seconds (the default is one a minute) so the rate limit can be watched."""
    env = {"KUBEMINT_MANUAL_ROTATION_INTERVAL": str(MANUAL_INTERVAL)}
    with own_operator(cluster, tmp_path_factory, extra_env=env) as running:
        yield running


def _ready_within(
    cluster: ControlPlane, kind: str, namespace: str, name: str, timeout: float
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(cluster, kind, namespace, name)
        generation = (obj or {}).get("metadata", {}).get("generation")
        ready = condition(obj)
        if ready.get("status") == "True" and ready.get("observedGeneration") == generation:
            return obj
        return None

    return wait_for(probe, f"{kind} {namespace}/{name} to be Ready", timeout=timeout)


def test_a_tenants_client_becomes_ready_while_the_admin_generates_rsa_4096_keys(
    operator: RunningOperator, tenants: TenantFactory
) -> None:
    cluster, server_ns = operator.cluster, operator.namespace
    prefix = f"t{uuid.uuid4().hex[:6]}"
    tenant = tenants(prefix)
    names = [f"{prefix}-rsa{i}" for i in range(RSA_KEYS)]
    keys = [
        custom("SigningKey", n, server_ns, algorithm="RS256", keySize=4096, rotation=FASTEST_RSA)
        for n in names
    ]
    try:
        started = time.monotonic()
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": keys}),
        )
        tenant.apply(custom("OAuth2Client", "app", tenant.namespace, audiences=["https://a.test"]))
        applied = time.monotonic()
        _ready_within(cluster, "OAuth2Client", tenant.namespace, "app", timeout=120)
        client_ready = time.monotonic() - applied
        pending = [n for n in names if not condition(get(cluster, "SigningKey", server_ns, n))]
        for name in names:
            _ready_within(cluster, "SigningKey", server_ns, name, timeout=600)
        keys_ready = time.monotonic() - started
        print(
            f"\n{RSA_KEYS} RSA-4096 SigningKeys Ready after {keys_ready:.1f}s; the tenant's "
            f"client Ready {client_ready:.2f}s after it was applied, while "
            f"{len(pending)} keys had no status yet"
        )
        # kopf handled the client while keys were being generated, not after them.
        assert pending, "every key was done before the client: nothing was measured"
        assert client_ready < 30, f"the client took {client_ready:.1f}s"
    finally:
        cluster.kubectl("delete", "signingkeys", "-n", server_ns, *names, "--wait=false")


def _status_where(
    cluster: ControlPlane, namespace: str, name: str, check: Any, what: str, timeout: float = 30
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(cluster, "SigningKey", namespace, name)
        status = (obj or {}).get("status") or {}
        return status if check(status) else None

    return wait_for(probe, what, timeout=timeout)


def test_a_manual_rotation_requested_too_soon_is_deferred_then_done(
    operator: RunningOperator,
) -> None:
    cluster, ns = operator.cluster, operator.namespace
    name = f"m{uuid.uuid4().hex[:6]}"
    apply(cluster, custom("SigningKey", name, ns, algorithm="EdDSA"))
    start = _ready_within(cluster, "SigningKey", ns, name, timeout=30)["status"]

    def rotate(value: str) -> None:
        cluster.kubectl(
            "annotate", "signingkey", name, "-n", ns, f"kubemint.io/rotate={value}", "--overwrite"
        )

    rotate("r1")
    first = _status_where(
        cluster, ns, name, lambda s: s.get("lastManualRotation") == "r1", "the first rotation"
    )
    assert first["active"]["kid"] == start["next"]["kid"]
    rotate("r2")  # within MANUAL_INTERVAL of the first
    deferred = _status_where(
        cluster, ns, name, lambda s: s.get("manualRotationDeferredUntil"), "the deferral"
    )
    assert deferred["active"]["kid"] == first["active"]["kid"]  # not rotated yet
    assert deferred["lastManualRotation"] == "r1"
    done_at = parse_time(first["lastManualRotationAt"]).timestamp() + MANUAL_INTERVAL
    assert parse_time(deferred["manualRotationDeferredUntil"]).timestamp() == done_at
    ready = next(c for c in deferred["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert "the rotation requested by kubemint.io/rotate is deferred until" in ready["message"]
    events = cluster.kubectl(
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        'jsonpath={range .items[*]}{.reason}: {.message}{"\\n"}{end}',
    ).stdout
    assert "RotationDeferred: the rotation requested by kubemint.io/rotate is deferred" in events
    assert f"manual rotations are limited to one every {MANUAL_INTERVAL}s" in events

    second = _status_where(
        cluster, ns, name, lambda s: s.get("lastManualRotation") == "r2", "the deferred rotation"
    )
    assert second["active"]["kid"] == first["next"]["kid"]  # done, not dropped
    assert "manualRotationDeferredUntil" not in second
    assert parse_time(second["lastManualRotationAt"]).timestamp() >= done_at
