"""Outsiders against the token server's HTTP surface: no lockout, nothing of theirs in the logs.

The attacker here knows a victim's client id (ids are `<namespace>.<name>`, easy to guess)
and nothing else. Failures it provokes under that id must never make the victim's correct
credentials fail; what it sends must not end up in the audit log or in `/metrics`; and the
per-source limit must still refuse the attacker itself.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kubemint.devcluster.components import token_server_process, wait_for_http
from kubemint.devcluster.controlplane import free_port
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import custom, secret_data, wait_for, wait_ready
from tests.integration.tenants import Tenant, TenantFactory

ATTACKER_ADDRESS = "127.0.0.2"  # loopback is a /8: a second source address for the attacker


@pytest.fixture
def victim(operator: RunningOperator, tenants: TenantFactory) -> dict[str, str]:
    """A tenant's client that owns an audience and may get tokens for it: its Secret's data."""
    name = f"t{uuid.uuid4().hex[:6]}"
    tenant: Tenant = tenants(name)
    audience = f"https://{name}.test"
    tenant.apply(
        custom("OAuth2Client", "app", name, audiences=[audience], scopes=["read"]),
        custom(
            "AccessRule",
            "app",
            name,
            audience=audience,
            subjects=[{"kind": "OAuth2Client", "name": "app"}],
            scopes=["read"],
        ),
    )
    wait_ready(operator.cluster, "OAuth2Client", name, "app")
    wait_ready(operator.cluster, "AccessRule", name, "app")
    data = secret_data(operator.cluster, name, "app-credentials")
    assert data is not None
    return data


@pytest.fixture
def attacker() -> Iterator[httpx.Client]:
    """An HTTP client calling from its own source address, with no credentials of anyone's."""
    transport = httpx.HTTPTransport(local_address=ATTACKER_ADDRESS)
    with httpx.Client(transport=transport, timeout=10) as client:
        yield client


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def _bad_attempts(client_id: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(path, form, headers): every way to fail authentication as `client_id` without its
    secret — no credential at all, wrong secrets, a junk assertion."""
    grant = {"grant_type": "client_credentials"}
    assertion = {
        "client_id": client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln",
    }
    return [
        ("/oauth2/token", {**grant, "client_id": client_id}, {}),
        ("/oauth2/token", grant, _basic(client_id, "guess")),
        ("/oauth2/token", {**grant, "client_id": client_id, "client_secret": "guess"}, {}),
        ("/oauth2/token", {**grant, **assertion}, {}),
        ("/oauth2/introspect", {"token": "x"}, _basic(client_id, "guess")),
        ("/oauth2/introspect", {"token": "x", "client_id": client_id}, {}),
        ("/oauth2/revoke", {"token": "x"}, _basic(client_id, "guess")),
    ]


def _attack(attacker: httpx.Client, issuer: str, client_id: str, count: int) -> list[int]:
    attempts = _bad_attempts(client_id)
    statuses = []
    for i in range(count):
        path, form, headers = attempts[i % len(attempts)]
        statuses.append(attacker.post(issuer + path, data=form, headers=headers).status_code)
    return statuses


def _victim_token(http: httpx.Client, issuer: str, data: dict[str, str]) -> httpx.Response:
    return http.post(
        issuer + "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        headers=_basic(data["client-id"], data["client-secret"]),
    )


def _victim_introspects(http: httpx.Client, issuer: str, data: dict[str, str], token: str) -> int:
    response = http.post(
        issuer + "/oauth2/introspect",
        data={"token": token},
        headers=_basic(data["client-id"], data["client-secret"]),
    )
    assert response.status_code != 200 or response.json()["active"] is True, response.text
    return response.status_code


def test_twenty_failures_charged_to_a_client_id_by_a_stranger_do_not_lock_the_client_out(
    token_server: RunningServer,
    victim: dict[str, str],
    attacker: httpx.Client,
    http: httpx.Client,
) -> None:
    # The server follows the API by watch: wait until the victim's client is known to it.
    first = wait_for(
        lambda: (r := _victim_token(http, token_server.issuer, victim)).status_code == 200 and r,
        "the victim's client to get a token",
    )
    statuses = _attack(attacker, token_server.issuer, victim["client-id"], 20)
    assert set(statuses[:10]) == {401}, statuses
    # Past the per-client limit the stranger's own failed attempts are told to slow down…
    assert statuses[-1] == 429, statuses

    # …while the victim's correct credentials keep working, at every endpoint.
    response = _victim_token(http, token_server.issuer, victim)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert _victim_introspects(http, token_server.issuer, victim, token) == 200
    earlier = first.json()["access_token"]
    assert _victim_introspects(http, token_server.issuer, victim, earlier) == 200
    revoke = http.post(
        token_server.issuer + "/oauth2/revoke",
        data={"token": first.json()["access_token"]},
        headers=_basic(victim["client-id"], victim["client-secret"]),
    )
    assert revoke.status_code == 200, revoke.text


@pytest.fixture
def default_limits_server(operator: RunningOperator, tmp_path: Path) -> Iterator[RunningServer]:
    """A token server with the default failure limits (the shared fixture lifts the
    per-source one, since every other test calls from 127.0.0.1)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    process = token_server_process(
        operator.cluster,
        namespace=operator.namespace,
        issuer=issuer,
        port=port,
        name="default-limits",
        log_dir=tmp_path,
    )
    process.start()
    try:
        wait_for_http(issuer + "/readyz", process)
        yield RunningServer(issuer, process)
    finally:
        process.stop()


def test_the_per_source_limit_refuses_the_attacker_and_only_the_attacker(
    default_limits_server: RunningServer,
    victim: dict[str, str],
    attacker: httpx.Client,
    http: httpx.Client,
) -> None:
    issuer = default_limits_server.issuer
    wait_for(
        lambda: _victim_token(http, issuer, victim).status_code == 200,
        "the victim's client to get a token",
    )
    statuses = _attack(attacker, issuer, victim["client-id"], 100)  # the default per source
    assert 429 in statuses  # the per-client limit tells the attacker to slow down
    # The 101st failure from that source: refused before any credential is looked at, for
    # any client id it claims.
    other = attacker.post(
        issuer + "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(f"other.{uuid.uuid4().hex[:6]}", "guess"),
    )
    assert other.status_code == 429, other.text
    assert int(other.headers["retry-after"]) > 0

    response = _victim_token(http, issuer, victim)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert _victim_introspects(http, issuer, victim, token) == 200


def _jwt_like() -> str:
    """Something a user might paste by mistake: a JWT-shaped value, unique to this test."""

    def part(value: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    header = part({"alg": "ES256", "kid": secrets.token_hex(8)})
    payload = part({"sub": secrets.token_hex(16), "aud": "https://x.test"})
    return f"{header}.{payload}.{secrets.token_urlsafe(64)}"


def test_what_an_outsider_sends_reaches_neither_the_audit_log_nor_the_metrics(
    token_server: RunningServer,
    victim: dict[str, str],
    attacker: httpx.Client,
    http: httpx.Client,
) -> None:
    issuer = token_server.issuer
    wait_for(
        lambda: _victim_token(http, issuer, victim).status_code == 200,
        "the victim's client to get a token",
    )
    pasted, made_up = _jwt_like(), f"{uuid.uuid4().hex}.{uuid.uuid4().hex}"
    sent = [
        ({"grant_type": pasted, "client_id": made_up}, {}),
        ({"grant_type": "client_credentials", "client_id": made_up}, {}),
        ({"grant_type": "client_credentials"}, _basic(made_up, "guess")),
        ({"grant_type": "client_credentials", "client_id": pasted}, {}),
        ({"grant_type": "client_credentials", "scope": pasted}, _basic(made_up, "guess")),
        # Unauthenticated, claiming a client that exists: its id must not become a label.
        ({"grant_type": "client_credentials", "client_id": victim["client-id"]}, {}),
    ]
    for form, headers in sent:
        assert attacker.post(issuer + "/oauth2/token", data=form, headers=headers).status_code in (
            400,
            401,
            429,
        )

    def audited() -> str | None:
        log = token_server.log()
        return log if log.count('"grant_type": "unsupported"') >= 1 else None

    log = wait_for(audited, "the audit line of the unsupported grant type")
    metrics = http.get(token_server.metrics_url).text
    assert "kubemint_tokens_total" in metrics
    header, payload, signature = pasted.split(".")
    # The unique parts of each segment (their first characters encode `{"alg": ` and such).
    for secret in (made_up, header[-12:], payload[12:40], signature[:30]):
        assert secret not in log
        assert secret not in metrics
    # Only the server's own, bounded vocabulary: no client ids in /metrics at all, not even
    # those of clients that exist and did get tokens.
    assert victim["client-id"] not in metrics
    assert '"client_id": "unknown"' in log
