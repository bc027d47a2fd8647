"""The calendar scenario's programs end to end: examples/calendar/apps/*.py against the real
operator and token server.

Like examples/calendar, but in this test's own namespaces (an audience belongs to the first
namespace that claims it, cluster-wide, so the audiences are made up per test): the Task
service's OAuth2Client in one namespace, the Calendar and File teams' AccessRules in two
others. The client's Secret is written out as files, the way a mounted Secret looks; the
Calendar and File APIs run as subprocesses (uvicorn on free ports) and `task_service.py --once`
calls them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kubemint.client import Credentials, KubemintAuth, TokenSource
from kubemint.devcluster.controlplane import free_port
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import apply, custom, secret_data, wait_for, wait_ready

APPS = Path(__file__).resolve().parents[2] / "examples" / "calendar" / "apps"
CALENDAR_SCOPES = ["event.view", "event.create", "event.update"]
FILES_SCOPES = ["file.view", "file.create", "file.update"]


@dataclass
class Scenario:
    calendar_audience: str
    files_audience: str
    credentials: Path  # the client Secret, one file per key
    secret: dict[str, str]


def _http_rules(host: str, path: str, scopes: dict[str, str]) -> list[dict[str, object]]:
    return [
        {"hosts": [host], "paths": [path], "methods": [method], "scopes": [scope]}
        for method, scope in scopes.items()
    ]


@pytest.fixture
def scenario(
    operator: RunningOperator, token_server: RunningServer, namespace: str, tmp_path: Path
) -> Iterator[Scenario]:
    cluster = operator.cluster
    tasks = namespace
    calendar_ns, files_ns = f"{namespace}-cal", f"{namespace}-files"
    calendar_audience = f"https://{uuid.uuid4().hex[:8]}.calendar.test"
    files_audience = f"https://{uuid.uuid4().hex[:8]}.files.test"
    for extra in (calendar_ns, files_ns):
        cluster.kubectl("create", "namespace", extra)
    try:
        client = {"kind": "OAuth2Client", "namespace": tasks, "name": "task-service"}
        apply(
            cluster,
            custom(
                "OAuth2Client",
                "task-service",
                tasks,
                authMethod="client_secret_basic",
                grantTypes=["client_credentials"],
                scopes=CALENDAR_SCOPES + FILES_SCOPES,
                audiences=[calendar_audience, files_audience],
                tokenLifetime="15m",
                secret={"name": "task-service-credentials"},
            ),
            custom(
                "AccessRule",
                "tasks-schedule-events",
                calendar_ns,
                audience=calendar_audience,
                subjects=[client],
                scopes=CALENDAR_SCOPES,
                http=_http_rules(
                    "calendar.example.com",
                    "/api/events",
                    {"GET": "event.view", "POST": "event.create", "PUT": "event.update"},
                ),
            ),
            custom(
                "AccessRule",
                "tasks-attachments",
                files_ns,
                audience=files_audience,
                subjects=[client],
                scopes=FILES_SCOPES,
            ),
        )
        wait_ready(cluster, "OAuth2Client", tasks, "task-service")
        wait_ready(cluster, "AccessRule", calendar_ns, "tasks-schedule-events")
        wait_ready(cluster, "AccessRule", files_ns, "tasks-attachments")
        secret = secret_data(cluster, tasks, "task-service-credentials") or {}
        assert {"client-id", "client-secret", "token-url"} <= set(secret), sorted(secret)
        volume = tmp_path / "task-service"
        volume.mkdir()
        for key, value in secret.items():
            (volume / key).write_text(value)
        scenario = Scenario(calendar_audience, files_audience, volume, secret)
        _wait_until_served(token_server, scenario)
        yield scenario
    finally:
        for extra in (calendar_ns, files_ns):
            cluster.kubectl("delete", "namespace", extra, "--wait=false", check=False)


def _wait_until_served(token_server: RunningServer, scenario: Scenario) -> None:
    """Until the token server's view has the client and both rules: full scopes granted."""
    auth = (scenario.secret["client-id"], scenario.secret["client-secret"])
    wanted = {scenario.calendar_audience: CALENDAR_SCOPES, scenario.files_audience: FILES_SCOPES}
    with httpx.Client(timeout=10) as http:

        def granted() -> bool:
            for audience, scopes in wanted.items():
                response = http.post(
                    token_server.token_url,
                    data={
                        "grant_type": "client_credentials",
                        "audience": audience,
                        "scope": " ".join(scopes),
                    },
                    auth=auth,
                )
                if response.status_code != 200:
                    return False
                if set(response.json().get("scope", "").split()) != set(scopes):
                    return False
            return True

        wait_for(granted, "the token server to grant the task service its scopes", timeout=30)


@dataclass
class Api:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _start_api(script: str, env: dict[str, str], log: Path) -> Api:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(APPS / script)],
            env={**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    api = Api(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_for(lambda: _healthy(api), f"{script} to answer /healthz", timeout=20)
    except BaseException:
        _stop(api.process)
        raise
    return api


def _healthy(api: Api) -> bool:
    if api.process.poll() is not None:
        raise AssertionError(f"exited with {api.process.returncode}:\n{api.output()}")
    try:
        return httpx.get(api.url + "/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def apis(
    token_server: RunningServer, scenario: Scenario, tmp_path: Path
) -> Iterator[tuple[Api, Api]]:
    """calendar_api.py and files_api.py, verifying tokens against the test's token server."""
    started: list[Api] = []
    try:
        started.append(
            _start_api(
                "calendar_api.py",
                {
                    "KUBEMINT_ISSUER": token_server.issuer,
                    "CALENDAR_AUDIENCE": scenario.calendar_audience,
                },
                tmp_path / "calendar-api.log",
            )
        )
        started.append(
            _start_api(
                "files_api.py",
                {"KUBEMINT_ISSUER": token_server.issuer, "FILES_AUDIENCE": scenario.files_audience},
                tmp_path / "files-api.log",
            )
        )
        yield started[0], started[1]
    finally:
        for api in started:
            _stop(api.process)


def _source(scenario: Scenario, audience: str, scope: str) -> TokenSource:
    return TokenSource(
        Credentials.from_directory(scenario.credentials), scope=scope, audience=audience
    )


def _run_task_service(
    scenario: Scenario, calendar: Api, files: Api, files_audience: str
) -> subprocess.CompletedProcess[str]:
    """One `task_service.py --once` cycle against the two running APIs."""
    return subprocess.run(
        [sys.executable, str(APPS / "task_service.py"), "--once"],
        env={
            **os.environ,
            "KUBEMINT_CREDENTIALS": str(scenario.credentials),
            "CALENDAR_URL": calendar.url,
            "CALENDAR_AUDIENCE": scenario.calendar_audience,
            "FILES_URL": files.url,
            "FILES_AUDIENCE": files_audience,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_task_service_schedules_a_task_through_both_apis(
    scenario: Scenario, apis: tuple[Api, Api]
) -> None:
    calendar, files = apis
    result = _run_task_service(scenario, calendar, files, scenario.files_audience)
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"{output}\n--- calendar-api:\n{calendar.output()}\n--- files-api:\n{files.output()}"
    )
    assert "cycle ok" in output
    # It logs outcomes, never the client secret or a token (JWTs start with eyJ).
    assert scenario.secret["client-secret"] not in output
    assert "eyJ" not in output

    client_id = scenario.secret["client-id"]
    with (
        _source(scenario, scenario.calendar_audience, "event.view") as calendar_tokens,
        _source(scenario, scenario.files_audience, "file.view") as files_tokens,
        httpx.Client(auth=KubemintAuth(calendar_tokens), timeout=10) as calendar_http,
        httpx.Client(auth=KubemintAuth(files_tokens), timeout=10) as files_http,
    ):
        events = calendar_http.get(calendar.url + "/api/events")
        stored = files_http.get(files.url + "/v1/files")
    assert events.status_code == 200, events.text
    assert stored.status_code == 200, stored.text
    (event,) = events.json()["events"]
    (attachment,) = stored.json()["files"]
    assert event["created_by"] == client_id
    assert event["updated_by"] == client_id
    assert event["attachments"] == [attachment["id"]]
    assert attachment["created_by"] == client_id
    assert attachment["name"].endswith(".txt")
    assert attachment["task"] in event["title"]


def test_the_calendar_api_refuses_a_token_without_event_create(
    scenario: Scenario, apis: tuple[Api, Api]
) -> None:
    calendar, _ = apis
    with (
        _source(scenario, scenario.calendar_audience, "event.view") as view_only,
        httpx.Client(base_url=calendar.url, auth=KubemintAuth(view_only), timeout=10) as http,
    ):
        assert http.get("/api/events").status_code == 200
        denied = http.post("/api/events", json={"title": "x", "start": "2030-01-01T09:00:00Z"})
    assert denied.status_code == 403, denied.text
    challenge = denied.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="event.create"' in challenge
    assert denied.json()["error"] == "insufficient_scope"

    anonymous = httpx.post(calendar.url + "/api/events", json={}, timeout=10)
    assert anonymous.status_code == 401
    assert 'error="invalid_token"' in anonymous.headers["www-authenticate"]
    # A token for the other API is not accepted here either (audience).
    with _source(scenario, scenario.files_audience, "file.view file.create") as files_tokens:
        wrong = httpx.get(
            calendar.url + "/api/events",
            headers={"Authorization": f"Bearer {files_tokens.token()}"},
            timeout=10,
        )
    assert wrong.status_code == 401


def test_the_task_service_exits_1_and_says_why_when_a_call_fails(
    scenario: Scenario, apis: tuple[Api, Api]
) -> None:
    calendar, files = apis
    result = _run_task_service(scenario, calendar, files, "https://not-a-client-audience.test")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "no token from kubemint: invalid_target" in output, output
    assert scenario.secret["client-secret"] not in output
    assert "eyJ" not in output
