"""Client authentication attacks on the token endpoint, in-process: probing for disabled
clients, a wrong client secret smuggled next to an app password, and what the audit says."""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from kubemint.api.records import Generation, StoredKey
from kubemint.config import ServerSettings, parse_networks
from kubemint.crypto import keys, secrets
from kubemint.server.app import create_app
from kubemint.store.view import StaticView
from tests.unit.records import account_record, build, client_record, keys_secret

ISSUER = "https://kubemint.test"
AUDIENCE = "https://calendar.test"
NOW = datetime.datetime.now(datetime.UTC)
SECRET = secrets.generate_secret()
PASSWORD = secrets.generate_secret()


def _meta(name: str) -> dict[str, Any]:
    return {"namespace": "tasks", "name": name, "creationTimestamp": "2026-01-01T00:00:00Z"}


def _generation(value: str) -> Generation:
    return Generation(secrets.digest(value), datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    signing = StoredKey(keys.generate("ES256"), "active", NOW, activated_at=NOW)
    grants = ["client_credentials", "password"]
    common = {"audiences": [AUDIENCE], "scopes": ["read"], "grantTypes": grants}
    snapshot = build(
        server_namespace="kubemint-system",
        clients=[
            {"metadata": _meta("app"), "spec": common},
            {"metadata": _meta("off"), "spec": {**common, "disabled": True}},
        ],
        accounts=[
            {
                "metadata": _meta("robot"),
                "spec": {"clients": ["app"], "appPasswords": {"secretName": "robot-password"}},
            }
        ],
        rules=[
            {
                "metadata": {**_meta("r"), "namespace": "calendar"},
                "spec": {
                    "audience": AUDIENCE,
                    "scopes": ["read"],
                    "subjects": [
                        {"kind": "OAuth2Client", "namespace": "tasks", "name": "app"},
                        {"kind": "ServiceAccount", "namespace": "tasks", "name": "robot"},
                    ],
                },
            }
        ],
        signing_keys=[
            {"metadata": {"namespace": "kubemint-system", "name": "default"}, "spec": {}}
        ],
        secrets=[
            keys_secret("default", [signing]),
            client_record("tasks", "app", secrets=[_generation(SECRET)]),
            client_record("tasks", "off", secrets=[_generation(SECRET)]),
            account_record("tasks", "robot", passwords=[_generation(PASSWORD)]),
        ],
    )
    settings = ServerSettings(
        namespace="kubemint-system", issuer=ISSUER, failures_per_client=10_000
    )
    with TestClient(create_app(settings, StaticView(snapshot))) as test_client:
        yield test_client


def _token(client: TestClient, auth: tuple[str, str] | None, **form: str) -> Any:
    return client.post(
        "/oauth2/token", data={"grant_type": "client_credentials", **form}, auth=auth
    )


def test_the_right_secret_gets_a_token(client: TestClient) -> None:
    assert _token(client, ("tasks.app", SECRET)).status_code == 200


def test_a_disabled_client_is_told_only_to_a_caller_with_its_secret(client: TestClient) -> None:
    probe = _token(client, ("tasks.off", "guess"))
    assert (probe.status_code, probe.json()["error"]) == (401, "invalid_client")
    assert "disabled" not in probe.text
    owner = _token(client, ("tasks.off", SECRET))
    assert owner.json() == {
        "error": "unauthorized_client",
        "error_description": "the client is disabled",
    }


def test_an_unknown_client_looks_like_a_wrong_secret(client: TestClient) -> None:
    unknown, wrong = _token(client, ("tasks.nobody", "x")), _token(client, ("tasks.app", "x"))
    assert (unknown.status_code, unknown.json()) == (wrong.status_code, wrong.json())


def _password(client: TestClient, auth: tuple[str, str] | None, **form: str) -> Any:
    return _token(client, auth, grant_type="password", username="robot", password=PASSWORD, **form)


def test_an_app_password_needs_no_client_secret(client: TestClient) -> None:
    assert _password(client, None, client_id="tasks.app").status_code == 200
    # Some libraries name a public client with an empty Basic secret.
    assert _password(client, ("tasks.app", "")).status_code == 200
    assert _password(client, ("tasks.app", SECRET)).status_code == 200


@pytest.mark.parametrize(
    ("auth", "form"),
    [
        (("tasks.app", "wrong-secret"), {}),
        (None, {"client_id": "tasks.app", "client_secret": "wrong-secret"}),
    ],
)
def test_a_wrong_client_secret_next_to_an_app_password_is_refused(
    client: TestClient, auth: tuple[str, str] | None, form: dict[str, str]
) -> None:
    response = _password(client, auth, **form)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def test_the_audit_line_names_the_claimed_client_and_the_reason(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kubemint.audit"):
        _token(client, ("tasks.app", "wrong-secret"))
    line = json.loads(caplog.records[-1].getMessage().removeprefix("token "))
    assert line["client_id"] == "tasks.app"
    assert line["error"] == "invalid_client"
    assert line["reason"] == "wrong client secret"
    assert "wrong-secret" not in caplog.text


def test_behind_a_trusted_proxy_one_attacker_locks_out_only_itself() -> None:
    settings = ServerSettings(
        namespace="kubemint-system",
        issuer=ISSUER,
        failures_per_source=3,
        trusted_proxies=parse_networks("10.0.0.0/8"),
    )
    app = create_app(
        settings,
        StaticView(
            build(
                server_namespace="kubemint-system",
                clients=[],
                accounts=[],
                rules=[],
                signing_keys=[],
                secrets=[],
            )
        ),
    )
    with TestClient(app, client=("10.0.0.5", 40000)) as ingress:

        def attempt(source: str) -> int:
            response = ingress.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(f"tasks.{source}", "wrong"),
                headers={"X-Forwarded-For": source},
            )
            return response.status_code

        assert [attempt("203.0.113.7") for _ in range(4)] == [401, 401, 401, 429]
        assert attempt("198.51.100.1") == 401  # another client behind the same ingress
