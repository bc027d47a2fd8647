"""Availability attacks on the shared token server, done as tenants with namespace-only rights.

Findings 1 and 2 of issue 10: one object with an overflowing duration froze the whole view
(new clients 401, `disabled: true` ignored, /readyz still ready), and one AccessRule with an
expensive `when` stalled every other tenant's token requests (CEL ran on the event loop, with
no cost limit). Each test is the attack; it must fail, and the victims keep working.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kubemint.devcluster import ControlPlane
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import condition, custom, get, wait_for, wait_ready
from tests.integration.tenant_requests import credentials as _credentials
from tests.integration.tenant_requests import issued as _issued
from tests.integration.tenant_requests import prefix as _prefix
from tests.integration.tenant_requests import token as _token
from tests.integration.tenants import Tenant, TenantFactory

OVERFLOW = "99999999999999999999999999999h"  # matches the CRD pattern; 3.6e32 seconds
# Two nested comprehensions (within the operator's nesting limit) whose body compiles a regex
# and backtracks: well under the CRD's maxLength, about a second of CPU per evaluation.
_ZEROS = "[" + ",".join(["0"] * 210) + "]"
EXPENSIVE_WHEN = f"{_ZEROS}.all(a, {_ZEROS}.all(b, '{'a' * 30}'.matches('^(a|aa)+$')))"
# Four nested comprehensions: refused by the operator's static check (InvalidExpression).
_SMALL = "[" + ",".join(["0"] * 30) + "]"
NESTED_WHEN = (
    f"{_SMALL}.all(a, {_SMALL}.all(b, {_SMALL}.all(c, {_SMALL}.all(d, a + b + c + d == 0))))"
)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


def _client(name: str, namespace: str, audience: str, **spec: Any) -> dict[str, Any]:
    return custom("OAuth2Client", name, namespace, audiences=[audience], scopes=["read"], **spec)


def _rule(tenant: Tenant, audience: str, client: str, when: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "audience": audience,
        "subjects": [{"kind": "OAuth2Client", "name": client}],
        "scopes": ["read"],
    }
    if when is not None:
        spec["when"] = when
    return custom("AccessRule", f"grant-{client}", tenant.namespace, **spec)


def _working_client(
    cluster: ControlPlane, tenant: Tenant, name: str, audience: str, when: str | None = None
) -> tuple[str, str]:
    tenant.apply(_client(name, tenant.namespace, audience), _rule(tenant, audience, name, when))
    wait_ready(cluster, "OAuth2Client", tenant.namespace, name)
    return _credentials(cluster, tenant.namespace, name)


# -- finding 1: one object must cost only itself ----------------------------------------------

DURATION_FIELDS = [
    pytest.param("OAuth2Client", {"secret": {"overlap": OVERFLOW}}, "spec.secret.overlap"),
    pytest.param(
        "OAuth2Client",
        {"secret": {"rotateEvery": OVERFLOW}},
        "spec.secret.rotateEvery",
    ),
    pytest.param("OAuth2Client", {"tokenLifetime": OVERFLOW}, "spec.tokenLifetime"),
    pytest.param(
        "ServiceAccount",
        {"clients": ["c"], "appPasswords": {"secretName": "pw", "overlap": OVERFLOW}},
        "spec.appPasswords.overlap",
    ),
    pytest.param(
        "ServiceAccount",
        {"clients": ["c"], "appPasswords": {"secretName": "pw", "rotateEvery": OVERFLOW}},
        "spec.appPasswords.rotateEvery",
    ),
    pytest.param("SigningKey", {"rotation": {"every": OVERFLOW}}, "spec.rotation.every"),
    pytest.param("SigningKey", {"rotation": {"prePublish": OVERFLOW}}, "spec.rotation.prePublish"),
    pytest.param(
        "SigningKey", {"rotation": {"retainAfter": OVERFLOW}}, "spec.rotation.retainAfter"
    ),
]


@pytest.mark.parametrize(("kind", "spec", "field"), DURATION_FIELDS)
def test_admission_refuses_a_duration_beyond_its_bound_naming_the_field(
    operator: RunningOperator, tenants: TenantFactory, kind: str, spec: dict[str, Any], field: str
) -> None:
    tenant = tenants(_prefix())
    body = custom(kind, "overflow", tenant.namespace, **spec)
    if kind == "OAuth2Client":
        body["spec"]["audiences"] = ["https://overflow.test"]
    result = tenant.kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=json.dumps(body), check=False
    )
    assert result.returncode != 0, f"{field}={OVERFLOW} was admitted"
    assert field in result.stderr, result.stderr


@pytest.fixture
def unbounded_overlap(cluster: ControlPlane) -> Iterator[None]:
    """The OAuth2Client CRD as it was before durations were bounded, for one test: objects
    stored then are not re-validated by an upgrade, so Python must cope with them."""
    name = "oauth2clients.kubemint.io"
    original = json.loads(cluster.kubectl("get", "crd", name, "-o", "json").stdout)
    relaxed = copy.deepcopy(original)
    schema = relaxed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    overlap = schema["properties"]["spec"]["properties"]["secret"]["properties"]["overlap"]
    overlap.pop("x-kubernetes-validations", None)
    relaxed["metadata"] = {"name": name}
    cluster.kubectl("replace", "-f", "-", stdin=json.dumps(relaxed))
    try:
        yield
    finally:
        current = json.loads(cluster.kubectl("get", "crd", name, "-o", "json").stdout)
        original["metadata"] = {
            "name": name,
            "resourceVersion": current["metadata"]["resourceVersion"],
            "labels": original["metadata"].get("labels", {}),
        }
        cluster.kubectl("replace", "-f", "-", stdin=json.dumps(original))


def test_an_overflowing_duration_costs_only_its_own_object(
    operator: RunningOperator,
    token_server: RunningServer,
    tenants: TenantFactory,
    http: httpx.Client,
    unbounded_overlap: None,
) -> None:
    """An attacker's client with `secret.overlap: 99…9h` (stored before admission bounded
    it) made every rebuild of the view fail: the server kept a frozen view forever."""
    cluster, prefix = operator.cluster, _prefix()
    victim, attacker = tenants(prefix), tenants(f"{prefix}-a")
    audience = f"https://{prefix}.test"
    before = _working_client(cluster, victim, "before", audience)
    wait_for(lambda: _issued(http, token_server, before, audience), "the victim's token")

    bomb_body = json.dumps(
        _client("bomb", attacker.namespace, audience, secret={"overlap": OVERFLOW})
    )
    wait_for(  # the relaxed schema takes a moment to be in force
        lambda: attacker.kubectl("apply", "-f", "-", stdin=bomb_body, check=False).returncode == 0,
        "the API server to store the attacker's client",
    )
    # The view keeps following changes: a new client works, a disabled one stops.
    after = _working_client(cluster, victim, "after", audience)
    wait_for(lambda: _issued(http, token_server, after, audience), "the new client's token")
    victim.apply(_client("before", victim.namespace, audience, disabled=True))
    wait_for(
        lambda: (
            _token(http, token_server, before, audience).json().get("error")
            == "unauthorized_client"
        ),
        "the disabled client to be refused",
    )
    # The operator reports the bad field on the attacker's own object.
    bomb = wait_for(
        lambda: (
            (o := get(cluster, "OAuth2Client", attacker.namespace, "bomb"))
            and condition(o).get("reason") == "InvalidSpec"
            and o
        ),
        "the attacker's client to be reported InvalidSpec",
    )
    assert "spec.secret.overlap" in condition(bomb)["message"], condition(bomb)
    ready = http.get(token_server.issuer + "/readyz")
    assert ready.status_code == 200, ready.text
    metrics = http.get(token_server.metrics_url).text
    assert 'kubemint_view_objects_skipped{kind="OAuth2Client"} 1.0' in metrics, metrics


# -- finding 2: one tenant's `when` must not stall the others ---------------------------------


def test_an_expensive_when_does_not_slow_other_tenants(
    operator: RunningOperator,
    token_server: RunningServer,
    tenants: TenantFactory,
    http: httpx.Client,
) -> None:
    """A ~1 s `when` used to run on the server's event loop: every concurrent request of
    every tenant waited for it."""
    cluster, prefix = operator.cluster, _prefix()
    victim, attacker = tenants(prefix), tenants(f"{prefix}-a")
    victim_aud, attacker_aud = f"https://{prefix}.test", f"https://{prefix}-a.test"
    plain = _working_client(cluster, victim, "plain", victim_aud)
    cheap = _working_client(
        cluster, victim, "cheap", victim_aud, when="request.grant_type == 'client_credentials'"
    )
    bomb = _working_client(cluster, attacker, "bomb", attacker_aud, when=EXPENSIVE_WHEN)
    for auth in (plain, cheap):
        wait_for(lambda a=auth: _issued(http, token_server, a, victim_aud), "victim tokens")  # type: ignore[misc]

    stop = threading.Event()
    attacker_statuses: list[int] = []

    def attack() -> None:
        with httpx.Client(timeout=120) as own:
            while not stop.is_set():
                attacker_statuses.append(_token(own, token_server, bomb, attacker_aud).status_code)

    threads = [threading.Thread(target=attack, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)  # the attack is under way
        latencies = []
        for _ in range(10):
            for auth in (plain, cheap):
                started = time.perf_counter()
                response = _token(http, token_server, auth, victim_aud)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    assert max(latencies) < 0.5, f"victim token latencies under attack: {sorted(latencies)}"
    # The attacker's own requests fail fast and retryable, never with a 500.
    assert attacker_statuses, "the attack sent nothing"
    assert set(attacker_statuses) <= {503}, attacker_statuses
    refused = _token(http, token_server, bomb, attacker_aud)
    assert refused.json()["error"] == "temporarily_unavailable", refused.text


def test_a_deeply_nested_when_is_reported_and_grants_nothing(
    operator: RunningOperator,
    token_server: RunningServer,
    tenants: TenantFactory,
    http: httpx.Client,
) -> None:
    cluster, prefix = operator.cluster, _prefix()
    tenant = tenants(prefix)
    audience = f"https://{prefix}.test"
    tenant.apply(_client("nested", tenant.namespace, audience))
    tenant.apply(_rule(tenant, audience, "nested", when=NESTED_WHEN))
    rule = wait_ready(cluster, "AccessRule", tenant.namespace, "grant-nested", status="False")
    assert condition(rule)["reason"] == "InvalidExpression", condition(rule)
    assert "spec.when" in condition(rule)["message"], condition(rule)
    auth = _credentials(cluster, tenant.namespace, "nested")
    wait_ready(cluster, "OAuth2Client", tenant.namespace, "nested")
    started = time.perf_counter()
    response = _token(http, token_server, auth, audience)
    assert time.perf_counter() - started < 0.5
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "access_denied"
