"""`can-i` over the objects alone answers as the token endpoint does with real credentials:
a table run through `TokenService.issue` (real client authentication, records, signing key)
and through `can_i.ask` (the same bodies, no Secret), including a `when` on request.source."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest

from kubemint.admin.can_i import Question, ask, snapshot_of
from kubemint.api.meta import KIND_ACCESS_RULE, KIND_ACCOUNT, KIND_CLIENT, KIND_SIGNING_KEY
from kubemint.api.records import Generation, StoredKey
from kubemint.crypto import keys, secrets
from kubemint.oauth.client_auth import TokenRequest
from kubemint.oauth.errors import OAuth2Error
from kubemint.oauth.token_endpoint import Audit, TokenService
from tests.unit.records import account_record, build, client_record, keys_secret, with_uid

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
AUDIENCE, OTHER = "https://api.test", "https://other.test"
SECRET, PASSWORD = "kmint_secret", "kmint_password"
SIGNING = StoredKey(keys.generate("ES256"), "active", NOW, activated_at=NOW)


def _meta(name: str, namespace: str = "tasks") -> dict[str, Any]:
    return {"namespace": namespace, "name": name, "creationTimestamp": "2026-01-01T00:00:00Z"}


def _rule(name: str, subjects: list[tuple[str, str]], scopes: list[str], **spec: Any) -> Any:
    return {
        "metadata": _meta(name, "api"),
        "spec": {
            "audience": AUDIENCE,
            "scopes": scopes,
            "subjects": [{"kind": k, "namespace": "tasks", "name": n} for k, n in subjects],
            **spec,
        },
    }


def _objects() -> dict[str, list[dict[str, Any]]]:
    common = {"audiences": [AUDIENCE, OTHER], "scopes": ["read", "write", "admin"]}
    return {
        KIND_CLIENT: [
            with_uid(KIND_CLIENT, {"metadata": _meta("app"), "spec": common}),
            with_uid(KIND_CLIENT, {"metadata": _meta("off"), "spec": {**common, "disabled": True}}),
            with_uid(KIND_CLIENT, {"metadata": _meta("near"), "spec": common}),
        ],
        KIND_ACCOUNT: [
            with_uid(
                KIND_ACCOUNT,
                {
                    "metadata": _meta(name),
                    "spec": {"clients": ["app"], "appPasswords": {"secretName": f"{name}-pw"}},
                },
            )
            for name in ("robot", "idle")
        ],
        KIND_ACCESS_RULE: [
            _rule("readers", [(KIND_CLIENT, "app"), (KIND_ACCOUNT, "robot")], ["read", "write"]),
            _rule("local", [(KIND_CLIENT, "near")], ["read"], when='request.source == "10.0.0.7"'),
        ],
        KIND_SIGNING_KEY: [
            with_uid(
                KIND_SIGNING_KEY,
                {
                    "metadata": {"namespace": "kubemint-system", "name": "default"},
                    "spec": {},
                    "status": {"active": {"kid": SIGNING.material.kid}},
                },
            )
        ],
    }


def _service() -> TokenService:
    objects = _objects()
    generation = Generation(secrets.digest(SECRET), NOW - datetime.timedelta(days=1))
    password = Generation(secrets.digest(PASSWORD), NOW - datetime.timedelta(days=1))
    snapshot = build(
        clients=objects[KIND_CLIENT],
        accounts=objects[KIND_ACCOUNT],
        rules=objects[KIND_ACCESS_RULE],
        signing_keys=objects[KIND_SIGNING_KEY],
        secrets=[
            keys_secret("default", [SIGNING]),
            *(client_record("tasks", n, secrets=[generation]) for n in ("app", "off", "near")),
            *(account_record("tasks", n, passwords=[password]) for n in ("robot", "idle")),
        ],
    )
    return TokenService("https://kubemint.test", "https://kubemint.test/oauth2/token",
                        lambda: snapshot, clock=lambda: NOW)  # fmt: skip


ROWS = [
    # client, account, audience, scope, grant type, source
    ("app", None, AUDIENCE, "read", "client_credentials", ""),
    ("app", None, AUDIENCE, None, "client_credentials", ""),
    ("app", None, AUDIENCE, "admin", "client_credentials", ""),
    ("app", None, OTHER, "read", "client_credentials", ""),
    ("app", None, "https://nowhere.test", "read", "client_credentials", ""),
    ("app", None, AUDIENCE, "read", "password", ""),
    ("off", None, AUDIENCE, "read", "client_credentials", ""),
    ("near", None, AUDIENCE, "read", "client_credentials", "10.0.0.7"),
    ("near", None, AUDIENCE, "read", "client_credentials", "10.0.0.8"),
    ("app", "robot", AUDIENCE, "read", "client_credentials", ""),
    ("app", "idle", AUDIENCE, "read", "client_credentials", ""),
]


def _endpoint(service: TokenService, row: tuple[Any, ...]) -> tuple[str, str, str]:
    client, account, audience, scope, grant_type, source = row
    form = {"grant_type": grant_type, "audience": audience}
    if scope is not None:
        form["scope"] = scope
    if account:
        form |= {"username": account, "password": PASSWORD}
    basic = "Basic " + base64.b64encode(f"tasks.{client}:{SECRET}".encode()).decode()
    try:
        body = service.issue(TokenRequest(form, basic, source), Audit())
    except OAuth2Error as error:
        return error.error, error.description, error.reason
    return "issued", str(body["scope"]), ""


@pytest.mark.parametrize("row", ROWS)
def test_a_dry_run_answers_as_the_endpoint(row: tuple[Any, ...]) -> None:
    client, account, audience, scope, grant_type, source = row
    objects = _objects()
    snapshot = snapshot_of(objects, [], server_namespace="kubemint-system")
    question = Question(
        client=f"tasks/{client}" if not account else client,
        account=f"tasks/{account}" if account else None,
        audience=audience,
        scope=scope,
        grant_type=grant_type,
        source=source,
    )
    answer = ask(question, snapshot, objects)
    dry = (
        ("issued", " ".join(answer.scopes), "")
        if answer.allowed
        else (answer.error, answer.description, answer.reason)
    )
    assert dry == _endpoint(_service(), row)


def test_the_rules_say_which_one_decided() -> None:
    objects = _objects()
    snapshot = snapshot_of(objects, [], server_namespace="kubemint-system")
    answer = ask(
        Question(client="tasks.near", audience=AUDIENCE, source="10.0.0.8"), snapshot, objects
    )
    assert (answer.allowed, answer.error, answer.check) == (False, "access_denied", "grant")
    assert [(r.rule, r.outcome) for r in answer.rules] == [
        ("api/local", "condition false"),
        ("api/readers", "subject not listed"),
    ]
    assert answer.rules[0].when == 'request.source == "10.0.0.7"'


def test_an_unknown_client_and_a_key_without_an_active_kid_are_named() -> None:
    objects = _objects()
    snapshot = snapshot_of(objects, [], server_namespace="kubemint-system")
    unknown = ask(Question(client="tasks/ghost", audience=AUDIENCE), snapshot, objects)
    assert (unknown.error, unknown.check) == ("invalid_client", "client")
    assert "tasks/ghost" in unknown.reason
    objects[KIND_SIGNING_KEY][0]["status"] = {}
    no_key = ask(Question(client="tasks/app", audience=AUDIENCE), snapshot, objects)
    assert (no_key.error, no_key.check) == ("temporarily_unavailable", "signing key")
    assert ("api/readers", "grants") in [(r.rule, r.outcome) for r in no_key.rules]
