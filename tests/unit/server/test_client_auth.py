"""Client authentication attacks on the token endpoint, in-process: probing for disabled
clients, a wrong client secret smuggled next to an app password, and what the audit says."""

from __future__ import annotations

import base64
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
from kubemint.oauth.client_auth import TokenRequest, claimed_client_id
from kubemint.oauth.errors import InvalidClient
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


def _snapshot() -> Any:
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
    return snapshot


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings = ServerSettings(
        namespace="kubemint-system", issuer=ISSUER, failures_per_client=10_000
    )
    with TestClient(create_app(settings, StaticView(_snapshot()))) as test_client:
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


@pytest.fixture
def default_limits() -> Iterator[TestClient]:
    """The app with the default failure limits (10 per client id, 100 per source)."""
    settings = ServerSettings(namespace="kubemint-system", issuer=ISSUER)
    app = create_app(settings, StaticView(_snapshot()), revocations=None)
    with TestClient(app, client=("192.0.2.1", 40000)) as test_client:
        yield test_client


def _from(client: TestClient, source: str) -> TestClient:
    """The same app, seen from another peer address."""
    return TestClient(client.app, client=(source, 40000))


STRANGER_ATTEMPTS: list[tuple[str, tuple[str, str] | None, dict[str, str]]] = [
    ("/oauth2/token", None, {"grant_type": "client_credentials", "client_id": "tasks.app"}),
    ("/oauth2/token", ("tasks.app", "guess"), {"grant_type": "client_credentials"}),
    ("/oauth2/introspect", ("tasks.app", "guess"), {"token": "x"}),
    ("/oauth2/revoke", None, {"token": "x", "client_id": "tasks.app"}),
]


def test_failures_strangers_charge_to_a_client_id_never_refuse_its_correct_secret(
    default_limits: TestClient,
) -> None:
    statuses = [
        _from(default_limits, f"198.51.100.{i}").post(path, auth=auth, data=form).status_code
        for i in range(30)
        for path, auth, form in [STRANGER_ATTEMPTS[i % len(STRANGER_ATTEMPTS)]]
    ]
    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}  # the strangers' own failures are told to slow down
    token = _token(default_limits, ("tasks.app", SECRET))
    assert token.status_code == 200, token.text
    introspected = default_limits.post(
        "/oauth2/introspect",
        data={"token": token.json()["access_token"]},
        auth=("tasks.app", SECRET),
    )
    assert introspected.json()["active"] is True
    # A wrong secret is still refused: as 429 now, with the window's remaining time.
    wrong = _token(default_limits, ("tasks.app", "wrong"))
    assert wrong.status_code == 429
    assert 0 < int(wrong.headers["retry-after"]) <= 61


def test_an_unknown_client_id_is_throttled_exactly_like_a_known_one(
    default_limits: TestClient,
) -> None:
    def statuses(client_id: str) -> list[int]:
        return [_token(default_limits, (client_id, "guess")).status_code for _ in range(11)]

    assert statuses("tasks.app") == statuses("tasks.nobody") == [401] * 10 + [429]


def test_a_source_over_its_limit_is_refused_even_with_a_correct_secret(
    default_limits: TestClient,
) -> None:
    attacker = _from(default_limits, "203.0.113.9")
    for i in range(100):
        assert _token(attacker, (f"tasks.guess{i}", "guess")).status_code == 401
    assert _token(attacker, ("tasks.app", SECRET)).status_code == 429
    assert _token(default_limits, ("tasks.app", SECRET)).status_code == 200


def _audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(r.getMessage().removeprefix("token "))
        for r in caplog.records
        if r.name == "kubemint.audit" and r.getMessage().startswith("token ")
    ]


PASTED = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzZWNyZXQtc3ViamVjdC0xMjM0NTY3ODkwIn0." + "s" * 86


@pytest.mark.parametrize(
    ("form", "auth", "want"),
    [
        pytest.param(
            {"grant_type": PASTED},
            None,
            {"grant_type": "unsupported", "error": "unsupported_grant_type"},
            id="a token pasted as the grant type is logged as unsupported",
        ),
        pytest.param(
            {"grant_type": "client_credentials", "client_id": PASTED},
            None,
            {"client_id": "unknown", "error": "invalid_client"},
            id="a client id no client has is logged as unknown",
        ),
        pytest.param(
            {"grant_type": "client_credentials"},
            (PASTED, "guess"),
            {"client_id": "unknown", "error": "invalid_client"},
            id="a Basic user name no client has is logged as unknown",
        ),
        pytest.param(
            {"grant_type": "client_credentials", "scope": f"read {PASTED}"},
            ("tasks.app", SECRET),
            {"client_id": "tasks.app", "reason": "scope not allowed: 1 unknown"},
            id="requested scopes nothing defines are counted, not named",
        ),
        pytest.param(
            {"grant_type": "client_credentials", "scope": "read write"},
            ("tasks.nobody", "guess"),
            {"client_id": "unknown", "reason": "unknown client"},
            id="an unknown client's failure keeps its reason",
        ),
    ],
)
def test_the_audit_line_holds_only_known_names_never_what_the_caller_typed(
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    form: dict[str, str],
    auth: tuple[str, str] | None,
    want: dict[str, str],
) -> None:
    with caplog.at_level(logging.INFO, logger="kubemint.audit"):
        client.post("/oauth2/token", data=form, auth=auth)
    (line,) = _audit_lines(caplog)
    assert want.items() <= line.items(), line
    assert PASTED[:40] not in caplog.text
    assert PASTED.split(".")[1][:20] not in caplog.text


def test_a_repeated_parameter_is_named_in_the_audit_log_only_if_it_is_a_known_one(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = f"grant_type=client_credentials&{PASTED}=1&{PASTED}=2&scope=a&scope=b"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    with caplog.at_level(logging.INFO, logger="kubemint.audit"):
        client.post("/oauth2/token", content=body, headers=headers)
        client.post("/oauth2/token", content="scope=a&scope=b", headers=headers)
    first, second = _audit_lines(caplog)
    assert first["reason"] == "a parameter is repeated"
    assert second["reason"] == "parameter 'scope' repeated"
    assert PASTED[:20] not in caplog.text


def test_metrics_name_no_client_not_even_one_that_got_a_token(client: TestClient) -> None:
    assert _token(client, ("tasks.app", SECRET)).status_code == 200
    _token(client, None, client_id="tasks.app")  # unauthenticated, claiming a real id
    _token(client, None, client_id=PASTED)
    _token(client, None, grant_type=PASTED)
    app: Any = client.app
    metrics = TestClient(app.state.metrics_app).get("/metrics").text
    assert 'kubemint_tokens_total{grant_type="client_credentials",outcome="issued"}' in metrics
    assert 'grant_type="other"' in metrics
    assert "tasks.app" not in metrics
    assert PASTED[:20] not in metrics
    assert "client_id" not in metrics


def test_basic_credentials_are_decoded_once_and_malformed_ones_refused_every_time() -> None:
    good = TokenRequest({}, "Basic " + base64.b64encode(b"tasks.app:s%3Acret").decode())
    assert good.basic() == ("tasks.app", "s:cret")
    assert good.basic() is good.basic()  # decoded once: the same tuple
    assert claimed_client_id(good) == "tasks.app"
    bad = TokenRequest({}, "Basic !!!not-base64")
    for _ in range(2):  # a fresh error each time: no shared traceback or state
        with pytest.raises(InvalidClient, match="malformed basic credentials"):
            bad.basic()
    assert claimed_client_id(bad) == ""
    assert TokenRequest({}, None).basic() is None


# --- application/json token requests (an extension, oauth.json_body) --------------------------


def _json(
    client: TestClient, body: Any, auth: tuple[str, str] | None = None, **headers: str
) -> Any:
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(
        "/oauth2/token",
        content=raw,
        headers={"content-type": "application/json", **headers},
        auth=auth or ("tasks.app", SECRET),
    )


def test_supertokens_json_request_gets_a_token(client: TestClient) -> None:
    """SuperTokens' documented request: scope as an array, audience as a string."""
    body = {"grant_type": "client_credentials", "scope": ["read"], "audience": AUDIENCE}
    response = _json(client, body)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "read"
    # The client's authMethod is client_secret_basic: a JSON client_secret is as refused as
    # a form one (the same parameters, the same rules).
    posted = {**body, "client_id": "tasks.app", "client_secret": SECRET}
    as_form = client.post("/oauth2/token", data={**posted, "scope": "read"})
    assert client.post("/oauth2/token", json=posted).json() == as_form.json()


def test_a_json_scope_array_means_what_the_space_separated_form_means(client: TestClient) -> None:
    for scope in (["read", "write"], "read write"):
        as_json = _json(client, {"grant_type": "client_credentials", "scope": scope})
        as_form = _token(client, ("tasks.app", SECRET), scope="read write")
        assert (as_json.status_code, as_json.json().get("scope"), as_json.json().get("error")) == (
            as_form.status_code,
            as_form.json().get("scope"),
            as_form.json().get("error"),
        )


BAD_JSON = {
    "not an object": (["grant_type", "client_credentials"], "must be an object"),
    "a number": ({"grant_type": "client_credentials", "audience": 5}, "'audience' must be a"),
    "null": ({"grant_type": None}, "'grant_type' must be a string"),
    "a nested object": ({"grant_type": {"a": "b"}}, "must be a string"),
    "a scope array of non-strings": ({"grant_type": "client_credentials", "scope": [1]}, "scope"),
    "a scope holding a space": ({"scope": ["read write"]}, "scope must be"),
    "nested arrays": ({"scope": [["read"]]}, "malformed JSON"),
    "malformed": ('{"grant_type": ', "malformed JSON request body"),
    "not UTF-8": (b'{"grant_type": "\xff"}', "malformed JSON request body"),
    "a repeated member": (
        '{"grant_type": "client_credentials", "scope": "a", "scope": "b"}',
        "parameter 'scope' repeated",
    ),
    "deeply nested": ("[" * 100_00 + "]" * 100_00, "malformed JSON request body"),
}


@pytest.mark.parametrize("case", list(BAD_JSON), ids=list(BAD_JSON))
def test_a_bad_json_body_is_invalid_request_naming_what_is_wrong(
    client: TestClient, case: str
) -> None:
    body, message = BAD_JSON[case]
    response = _json(client, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert message in response.json()["error_description"]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "multipart/form-data", "", "application/jsonx"],
)
def test_every_other_content_type_keeps_its_clear_error(
    client: TestClient, content_type: str
) -> None:
    response = client.post(
        "/oauth2/token",
        content=b"grant_type=client_credentials",
        headers={"content-type": content_type},
        auth=("tasks.app", SECRET),
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "the request body must be application/x-www-form-urlencoded",
    }


def test_a_json_body_over_the_size_limit_is_refused_before_parsing(client: TestClient) -> None:
    body = json.dumps({"grant_type": "client_credentials", "scope": "a" * 70_000})
    assert _json(client, body).status_code == 413
