"""Tenants against the shared revocation store: one tenant's revocations cost only itself.

Every tenant's `POST /oauth2/revoke` lands in the token server's namespace. The attacker (a
tenant with rights only in its own namespace) revokes many of its own tokens; the victim
(another tenant) then revokes one of its tokens. The victim's revocation must work and cost
one small object whatever the attacker did (no shared object that grows with others' entries
and rewrites on every revocation, none that a tenant can fill); the attacker's entries beyond
its quota collapse into one watermark ("its tokens issued until T are revoked"), so every
token it revoked stays revoked, its new tokens work, and the store stays bounded; and its
write rate is bounded (429 + Retry-After, for it alone).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.integration.conftest import RunningOperator, RunningServer, own_token_server
from tests.integration.kube_helpers import custom, secret_data, wait_for, wait_ready
from tests.integration.tenants import TenantFactory

QUOTA = 10  # live revocation entries per client on this module's server
WRITES_PER_MINUTE = 15  # more than QUOTA + 1: the first test stays under it
ATTACK = 100  # revocations by the attacker: ten times its quota
SMALL = 2048  # bytes: what one revocation object may weigh (an entry or a watermark)


@pytest.fixture(scope="module")
def server(
    operator: RunningOperator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The token server on the operator's issuer, with a small per-client quota and rate."""
    env = {
        "KUBEMINT_REVOCATIONS_PER_CLIENT": str(QUOTA),
        "KUBEMINT_REVOCATION_WRITES_PER_MINUTE": str(WRITES_PER_MINUTE),
    }
    with own_token_server(operator, tmp_path_factory, extra_env=env) as running:
        yield running


@dataclass
class Team:
    namespace: str
    client_id: str
    secret: str
    audience: str

    @property
    def auth(self) -> tuple[str, str]:
        return self.client_id, self.secret


def _team(operator: RunningOperator, tenants: TenantFactory, name: str) -> Team:
    tenant = tenants(name)
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
    data = secret_data(operator.cluster, name, "app-credentials")
    assert data is not None
    return Team(name, data["client-id"], data["client-secret"], audience)


@pytest.fixture
def teams(operator: RunningOperator, tenants: TenantFactory) -> tuple[Team, Team]:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    return _team(operator, tenants, prefix + "-evil"), _team(operator, tenants, prefix + "-ok")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, trust_env=False) as client:
        yield client


def _token(http: httpx.Client, server: RunningServer, team: Team) -> str:
    response = wait_for(
        lambda: (
            (r := http.post(
                server.token_url,
                data={"grant_type": "client_credentials", "audience": team.audience},
                auth=team.auth,
            )).status_code == 200 and r
        ),
        f"a token for {team.client_id}",
    )  # fmt: skip
    token: str = response.json()["access_token"]
    return token


def _revoke(http: httpx.Client, server: RunningServer, team: Team, token: str) -> httpx.Response:
    return http.post(server.issuer + "/oauth2/revoke", data={"token": token}, auth=team.auth)


def _active(http: httpx.Client, server: RunningServer, team: Team, token: str) -> bool:
    url = server.issuer + "/oauth2/introspect"
    response = http.post(url, data={"token": token}, auth=team.auth)
    assert response.status_code == 200, response.text
    active: bool = response.json()["active"]
    return active


def _jti(token: str) -> str:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    jti: str = claims["jti"]
    return jti


def _store(operator: RunningOperator) -> list[dict[str, object]]:
    """The revocation objects in the server namespace, as the API server holds them."""
    listing = operator.cluster.kubectl(
        "get", "configmaps", "-n", operator.namespace,
        "-l", "kubemint.io/role=revocations", "-o", "json",
    ).stdout  # fmt: skip
    items: list[dict[str, object]] = json.loads(listing)["items"]
    return items


def _size(item: dict[str, object]) -> int:
    return len(json.dumps(item, separators=(",", ":")))


def _holding(items: list[dict[str, object]], jti: str) -> list[dict[str, object]]:
    return [i for i in items if jti in (i.get("data") or {})]  # type: ignore[operator]


def _of(items: list[dict[str, object]], client_id: str) -> list[dict[str, object]]:
    """Objects written for `client_id` (the store names the client in an annotation)."""
    return [
        i
        for i in items
        if (i["metadata"].get("annotations") or {}).get("kubemint.io/client-id") == client_id  # type: ignore[union-attr]
    ]


def test_one_tenant_s_revocations_cost_only_itself_and_the_store_stays_bounded(
    operator: RunningOperator, server: RunningServer, teams: tuple[Team, Team], http: httpx.Client
) -> None:
    evil, victim = teams
    victim_token = _token(http, server, victim)
    kept = _token(http, server, victim)
    tokens = [_token(http, server, evil) for _ in range(ATTACK)]
    for token in tokens:
        response = _revoke(http, server, evil, token)
        assert response.status_code == 200, response.text

    # The victim's revocation works and writes one small object of its own, whatever the
    # attacker put in the store before it.
    response = _revoke(http, server, victim, victim_token)
    assert response.status_code == 200, response.text
    wait_for(lambda: not _active(http, server, victim, victim_token), "the victim's revocation")
    items = _store(operator)
    holding = _holding(items, _jti(victim_token))
    assert len(holding) == 1, [i["metadata"] for i in holding]  # type: ignore[index]
    assert _size(holding[0]) < SMALL, (
        f"the victim's revocation rewrote a {_size(holding[0])}-byte object shared with others"
    )
    assert _active(http, server, victim, kept)

    # Every one of the attacker's revocations holds, in at most QUOTA entries + 1 watermark
    # of its own, each small.
    assert not any(_active(http, server, evil, t) for t in tokens)
    own = _of(items, evil.client_id)
    assert 0 < len(own) <= QUOTA + 1, len(own)
    assert max(_size(i) for i in own) < SMALL
    assert all(_size(i) < SMALL for i in items)
    # The watermark costs the attacker its earlier tokens, not its future ones (`iat` is in
    # seconds: a token of the watermark's own second counts as before it).
    time.sleep(1.1)
    fresh = _token(http, server, evil)
    wait_for(lambda: _active(http, server, evil, fresh), "a fresh token of the attacker")


def test_a_tenant_revoking_fast_is_slowed_down_alone(
    operator: RunningOperator, server: RunningServer, teams: tuple[Team, Team], http: httpx.Client
) -> None:
    """Each revocation of a newer token moves the watermark (one write): past the write rate
    the tenant is told to slow down; others' revocations are not."""
    evil, victim = teams
    statuses = []
    for attempt in range(WRITES_PER_MINUTE + 5):
        if attempt > QUOTA:  # past the quota, only a token newer than the watermark costs
            time.sleep(1.05)  # a write: one of a later second
        token = _token(http, server, evil)
        statuses.append((response := _revoke(http, server, evil, token)).status_code)
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) > 0
            assert response.json()["error"] == "slow_down"
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {200}, statuses
    assert len(statuses) == WRITES_PER_MINUTE + 1, statuses

    token = _token(http, server, victim)
    response = _revoke(http, server, victim, token)
    assert response.status_code == 200, response.text
    wait_for(lambda: not _active(http, server, victim, token), "the victim's revocation")
