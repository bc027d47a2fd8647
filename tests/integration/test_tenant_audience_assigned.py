"""Audience ownership in `assigned` mode: only a cluster admin's assignment makes an owner.

This module runs its own operator and token server with KUBEMINT_AUDIENCE_OWNERSHIP=assigned
(the fixtures `operator` and `token_server` are replaced for this module only), so it never
shares the cluster with a first-claim operator.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from kubemint.api.audiences import record_name
from kubemint.devcluster import ControlPlane
from tests.integration.audience_setup import Api, client, hold, refused, rule, status, wait_reason
from tests.integration.conftest import (
    RunningOperator,
    RunningServer,
    own_operator,
    own_token_server,
)
from tests.integration.kube_helpers import wait_for
from tests.integration.tenants import TenantFactory

ASSIGNED = {"KUBEMINT_AUDIENCE_OWNERSHIP": "assigned"}


@pytest.fixture(scope="module")
def operator(
    cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    # No periodic re-check to fall back on: statuses must follow ownership by the record
    # watcher's pokes alone.
    with own_operator(
        cluster, tmp_path_factory, extra_env=ASSIGNED, recheck_interval=600
    ) as running:
        yield running


@pytest.fixture(scope="module")
def token_server(
    operator: RunningOperator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    with own_token_server(operator, tmp_path_factory, extra_env=ASSIGNED) as running:
        yield running


def assign(operator: RunningOperator, audience: str, namespace: str) -> None:
    """What a cluster admin runs: `kubemint assign-audience … | kubectl apply -f -`."""
    manifest = subprocess.run(
        [sys.executable, "-m", "kubemint", "assign-audience", audience, namespace,
         "-n", operator.namespace],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    operator.cluster.kubectl("apply", "-f", "-", stdin=manifest)


def test_only_an_admin_assignment_makes_an_owner_and_statuses_follow_it(
    operator: RunningOperator, token_server: RunningServer, tenants: TenantFactory
) -> None:
    base = f"t{uuid.uuid4().hex[:6]}"
    owner, other = tenants(base), tenants(base + "-a")
    audience = f"https://api-{uuid.uuid4().hex[:8]}.test"
    api = Api(token_server, audience)
    mine = client(owner, "app", audience, ["read"])
    theirs = client(other, "app", audience, ["read"])
    owner.apply(rule(owner, "api", audience, "app", ["read"]))
    time.sleep(1.1)
    other.apply(rule(other, "api", audience, "app", ["read"]))

    # Claims alone own nothing, however old, and the operator records no first claim.
    unassigned = wait_reason(owner, "api", "AudienceNotAssigned")
    wait_reason(other, "api", "AudienceNotAssigned")
    hold(lambda: None if refused(api.token(mine, "read")) else "the first claim got a token", 2,
         "before any assignment")  # fmt: skip
    records = operator.cluster.kubectl(
        "get", "configmap", record_name(audience), "-n", operator.namespace, check=False
    )
    assert records.returncode != 0, "a claim was recorded in assigned mode"

    # The admin assigns the audience to the younger claim: it is Ready within moments.
    started = time.monotonic()
    assign(operator, audience, other.namespace)
    wait_reason(other, "api", "Reconciled")
    print(f"\nthe assigned namespace's rule was Ready {time.monotonic() - started:.2f}s later")
    wait_for(lambda: api.access_token(theirs, "read"), "a token for the assigned namespace")
    assert refused(api.token(mine, "read"))
    assert status(other, "api")["audienceOwner"] == other.namespace
    # Assigned elsewhere reads exactly like not assigned at all: nothing about the other tenant.
    elsewhere = wait_reason(owner, "api", "AudienceNotAssigned")
    assert elsewhere["message"] == unassigned["message"]
    assert "audienceOwner" not in status(owner, "api")

    # Reassignment moves it; every rule follows.
    started = time.monotonic()
    assign(operator, audience, owner.namespace)
    wait_reason(owner, "api", "Reconciled")
    wait_reason(other, "api", "AudienceNotAssigned")
    print(f"both rules followed the reassignment within {time.monotonic() - started:.2f}s")
    wait_for(lambda: api.access_token(mine, "read"), "a token for the new owner")
    assert refused(api.token(theirs, "read"))

    # Deleting every rule keeps the assignment: a re-created rule is Ready again.
    owner.kubectl("delete", "accessrule", "api", "-n", owner.namespace)
    owner.apply(rule(owner, "api", audience, "app", ["read"]))
    wait_reason(owner, "api", "Reconciled")

    # Withdrawing the assignment leaves the audience to nobody.
    operator.cluster.kubectl("delete", "configmap", record_name(audience), "-n", operator.namespace)
    wait_reason(owner, "api", "AudienceNotAssigned")
    wait_for(lambda: refused(api.token(mine, "read")), "the owner's tokens to stop")
    assert "audienceOwner" not in status(owner, "api")
    api.close()
