"""Tenants against the shared jti store: one tenant's client assertions cost only itself.

Every accepted client assertion is claimed as a ConfigMap in the token server's namespace
(kubemint.store.assertion_jtis), which every tenant shares. The attacker (a tenant with rights
only in its own namespace) creates many `private_key_jwt` clients and signs hour-long
assertions with each as fast as it can: with a budget per client only, the records it leaves
grow with the number of clients it makes. The budget per namespace bounds them whatever that
number, and meanwhile another tenant's `private_key_jwt` client keeps working: its
assertions are accepted (and claimed) and a replay is refused.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from kubemint.store.assertion_jtis import SELECTOR, record_name
from tests.integration.conftest import RunningOperator, RunningServer, own_token_server
from tests.integration.kube_helpers import custom, wait_for, wait_ready
from tests.integration.tenants import Tenant, TenantFactory

PER_CLIENT = 5  # shared claims per client per minute on this module's server
PER_NAMESPACE = 10  # and per namespace
CLIENTS = 8  # the attacker's clients: together 8 x 5 = 40 claims a minute without the fix
ROUNDS = PER_CLIENT + 2  # assertions each attacker client signs
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def server(
    operator: RunningOperator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    with own_token_server(
        operator,
        tmp_path_factory,
        extra_env={
            "KUBEMINT_ASSERTION_CLAIMS_PER_MINUTE": str(PER_CLIENT),
            "KUBEMINT_ASSERTION_NAMESPACE_CLAIMS_PER_MINUTE": str(PER_NAMESPACE),
            # The probes below fail on purpose (expired assertions): not a limit under test.
            "KUBEMINT_AUTH_FAILURES_PER_CLIENT": "100000",
        },
    ) as running:
        yield running


@dataclass
class Team:
    tenant: Tenant
    client_ids: list[str]
    key: ec.EllipticCurvePrivateKey
    audience: str

    @property
    def namespace(self) -> str:
        return self.tenant.namespace

    def assertion(self, client_id: str, token_url: str, lifetime: int = 3600) -> tuple[str, str]:
        """(a fresh assertion as long-lived as the server accepts, its jti)."""
        now, jti = int(time.time()), uuid.uuid4().hex
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "iat": now,
            "exp": now + lifetime,
            "jti": jti,
        }
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return jwt.encode(claims, pem, algorithm="ES256"), jti


def _team(operator: RunningOperator, tenants: TenantFactory, namespace: str, clients: int) -> Team:
    """As the tenant: `clients` private_key_jwt clients sharing one key, and a rule for them."""
    tenant = tenants(namespace)
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    audience = f"https://{namespace}.api.test"
    names = [f"c{i}" for i in range(clients)]
    tenant.apply(
        *(
            custom(
                "OAuth2Client",
                name,
                namespace,
                authMethod="private_key_jwt",
                jwks={"keys": [jwk]},
                audiences=[audience],
                scopes=["read"],
            )
            for name in names
        ),
        custom(
            "AccessRule",
            "api",
            namespace,
            audience=audience,
            scopes=["read"],
            subjects=[{"kind": "OAuth2Client", "name": name} for name in names],
        ),
    )
    wait_ready(operator.cluster, "AccessRule", namespace, "api")
    for name in names:
        wait_ready(operator.cluster, "OAuth2Client", namespace, name)
    return Team(tenant, [f"{namespace}.{name}" for name in names], key, audience)


def _post(http: httpx.Client, server: RunningServer, team: Team, assertion: str) -> httpx.Response:
    return http.post(
        server.token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "audience": team.audience,
        },
    )


def _known(http: httpx.Client, server: RunningServer, team: Team) -> None:
    """Wait until the server knows every client of `team`, without claiming anything: an
    expired assertion of a known client is refused before its claim, for being expired."""
    for client_id in team.client_ids:
        expired, _ = team.assertion(client_id, server.token_url, lifetime=-120)

        def knows(expired: str = expired) -> bool:
            answer = _post(http, server, team, expired).json()
            return bool(
                answer.get("error_description") == "client assertion rejected: token expired"
            )

        wait_for(knows, f"the token server to know {client_id}", timeout=60)


def _records(operator: RunningOperator) -> list[dict[str, Any]]:
    listing = operator.cluster.kubectl(
        "get", "configmaps", "-n", operator.namespace, "-l", SELECTOR, "-o", "json"
    ).stdout
    items: list[dict[str, Any]] = json.loads(listing)["items"]
    return items


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, trust_env=False) as client:
        yield client


def test_a_tenant_with_many_clients_fills_the_jti_store_only_up_to_its_namespace_budget(
    operator: RunningOperator, server: RunningServer, tenants: TenantFactory, http: httpx.Client
) -> None:
    prefix = f"j{uuid.uuid4().hex[:6]}"
    evil = _team(operator, tenants, prefix + "-evil", CLIENTS)
    victim = _team(operator, tenants, prefix + "-ok", 1)
    _known(http, server, evil)
    _known(http, server, victim)

    # The attack: every client signs fresh hour-long assertions as fast as it can.
    sent: list[str] = []  # the record names its accepted assertions would have
    statuses: list[int] = []
    # The server's budget windows are minutes of CLOCK_MONOTONIC, which every process on
    # this machine shares: the test sees which windows the attack touched.
    started = time.monotonic()
    for _ in range(ROUNDS):
        for client_id in evil.client_ids:
            assertion, jti = evil.assertion(client_id, server.token_url)
            response = _post(http, server, evil, assertion)
            statuses.append(response.status_code)
            sent.append(record_name(client_id, jti))
            last = response
    elapsed = time.monotonic() - started
    live = {item["metadata"]["name"] for item in _records(operator)}
    evil_records = [name for name in sent if name in live]
    windows = int((started + elapsed) // 60) - int(started // 60) + 1
    print(
        f"\nattacker: {CLIENTS} clients x {ROUNDS} assertions in {elapsed:.1f} s:"
        f" {len(evil_records)} live jti records ({statuses.count(200)} accepted,"
        f" {statuses.count(429)} refused with 429); per-client budget alone would allow"
        f" {CLIENTS * PER_CLIENT}, the namespace budget {PER_NAMESPACE} x {windows} windows"
    )
    assert len(evil_records) == statuses.count(200)  # each accepted assertion is one record
    assert len(evil_records) <= PER_NAMESPACE * windows, (
        f"{len(evil_records)} records from one namespace's {CLIENTS} clients: the store grows"
        " with the number of clients a tenant creates"
    )
    assert set(statuses) == {200, 429}, statuses

    # The attacker is told to slow down, as a namespace, with a clear RFC 6749 error.
    assert last.status_code == 429
    assert last.json() == {
        "error": "slow_down",
        "error_description": "too many client assertions from this client's namespace; retry later",
    }
    assert 1 <= int(last.headers["Retry-After"]) <= 60
    assert f"namespace {evil.namespace} has claimed its {PER_NAMESPACE}" in server.log()
    # Counted (the series exists at 0 from the start, so its presence alone proves nothing).
    refused = {
        sample.labels["budget"]: sample.value
        for family in text_string_to_metric_families(http.get(server.metrics_url).text)
        for sample in family.samples
        if sample.name == "kubemint_assertion_claims_refused_total"
    }
    assert refused["namespace"] >= 1, refused

    # Meanwhile the other tenant's private_key_jwt client works: its assertion is accepted
    # and claimed in the shared store (under its own namespace), and a replay is refused.
    _over_budget(http, server, evil)  # still (or, past a new minute, again)
    (victim_id,) = victim.client_ids
    assertion, jti = victim.assertion(victim_id, server.token_url)
    accepted = _post(http, server, victim, assertion)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["token_type"].lower() == "bearer"
    replay = _post(http, server, victim, assertion)
    assert (replay.status_code, replay.json()) == (
        401,
        {
            "error": "invalid_client",
            "error_description": "client assertion rejected: jti already used",
        },
    )
    record = {item["metadata"]["name"]: item for item in _records(operator)}[
        record_name(victim_id, jti)
    ]
    assert record["metadata"]["labels"]["kubemint.io/jti-namespace"] == victim.namespace
    print(f"one record: {len(json.dumps(record, separators=(',', ':')))} bytes of JSON")


def _over_budget(http: httpx.Client, server: RunningServer, team: Team) -> None:
    """Sign with `team`'s clients until its namespace is refused (at most one budget more)."""
    for attempt in range(PER_NAMESPACE + 1):
        assertion, _ = team.assertion(
            team.client_ids[attempt % len(team.client_ids)], server.token_url
        )
        if _post(http, server, team, assertion).status_code == 429:
            return
    raise AssertionError(f"{team.namespace} was not refused past its namespace budget")
