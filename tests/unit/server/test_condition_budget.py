"""A condition that cannot be evaluated within its budget refuses that request only, with
temporarily_unavailable (neither a grant nor a silent denial), and counts in /metrics."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from kubemint.api.records import Generation, StoredKey
from kubemint.config import ServerSettings
from kubemint.crypto import keys, secrets
from kubemint.policy import expressions
from kubemint.policy.expressions import Condition, EvaluationUnavailable
from kubemint.server.app import create_app
from kubemint.store.view import StaticView
from tests.unit.records import build, client_record, keys_secret

NOW = datetime.datetime.now(datetime.UTC)
SECRET = secrets.generate_secret()
SLOW = "request.scopes.all(s, s != '')"  # stands for an expensive one: the evaluator decides


def _client(name: str, audience: str) -> dict[str, Any]:
    meta = {"namespace": "tasks", "name": name, "creationTimestamp": "2026-01-01T00:00:00Z"}
    return {"metadata": meta, "spec": {"audiences": [audience], "scopes": ["read"]}}


def _rule(namespace: str, audience: str, client: str, when: str) -> dict[str, Any]:
    meta = {"namespace": namespace, "name": client, "creationTimestamp": "2026-01-01T00:00:00Z"}
    subjects = [{"kind": "OAuth2Client", "namespace": "tasks", "name": client}]
    spec = {"audience": audience, "scopes": ["read"], "subjects": subjects, "when": when}
    return {"metadata": meta, "spec": spec}


class OverBudget:
    """Answers like the in-process evaluator, except for SLOW, which never answers in time."""

    def __init__(self) -> None:
        self.owners: list[str] = []

    def evaluate(
        self, condition: Condition, request: Any, claims: Any, owner: str, tenant_claims: Any
    ) -> bool:
        self.owners.append(owner)
        if condition.source == SLOW:
            raise EvaluationUnavailable("timeout")
        return expressions.InProcess().evaluate(condition, request, claims, owner, tenant_claims)


@pytest.fixture
def evaluator() -> Iterator[OverBudget]:
    fake = OverBudget()
    previous = expressions.install(fake)
    try:
        yield fake
    finally:
        expressions.install(previous)


@pytest.fixture
def client() -> Iterator[TestClient]:
    signing = StoredKey(keys.generate("ES256"), "active", NOW, activated_at=NOW)
    generation = Generation(secrets.digest(SECRET), NOW)
    snapshot = build(
        clients=[_client("slow", "https://slow.test"), _client("quick", "https://quick.test")],
        accounts=[],
        rules=[
            _rule("evil", "https://slow.test", "slow", SLOW),
            _rule("team", "https://quick.test", "quick", "request.grant_type != ''"),
        ],
        signing_keys=[{"metadata": {"namespace": "kubemint-system", "name": "default"}}],
        secrets=[
            keys_secret("default", [signing]),
            client_record("tasks", "slow", secrets=[generation]),
            client_record("tasks", "quick", secrets=[generation]),
        ],
    )
    assert set(snapshot.conditional_clients) == {"tasks.slow", "tasks.quick"}
    settings = ServerSettings(namespace="kubemint-system", issuer="https://kubemint.test")
    with TestClient(create_app(settings, StaticView(snapshot))) as test_client:
        yield test_client


def _token(client: TestClient, name: str) -> Any:
    return client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(f"tasks.{name}", SECRET)
    )


def test_a_condition_over_budget_is_temporarily_unavailable_for_its_request_only(
    client: TestClient, evaluator: OverBudget
) -> None:
    refused = _token(client, "slow")
    assert refused.status_code == 503, refused.text
    assert refused.json() == {
        "error": "temporarily_unavailable",
        "error_description": "an AccessRule condition could not be evaluated in time; retry later",
    }
    assert refused.headers["Retry-After"] == "1"
    issued = _token(client, "quick")
    assert issued.status_code == 200, issued.text
    assert evaluator.owners == ["evil", "team"]  # each rule's namespace is its owner
