"""Incident response as tenants: disabling or deleting an identity stops its tokens in seconds.

The tasks team (a tenant with rights only in its namespace) holds tokens for the calendar
team's API (another tenant, whose resource server introspects and whose proxy asks
forward-auth). When the tasks team disables or deletes a client, deletes its kubemint
ServiceAccount or its Kubernetes ServiceAccount, every token issued on the strength of that
identity must stop at introspection and forward-auth within seconds, a re-created object of
the same name must not revive them, and the team's other identities keep working.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import custom, wait_for, wait_ready
from tests.integration.tenants import Tenant, TenantFactory

HOST = "calendar.example.com"
WITHIN = 10.0  # seconds: "within seconds", with room for a loaded test machine
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


@dataclass
class Teams:
    """The tasks team (tokens' holder) and the calendar team (the API, its resource server)."""

    tasks: Tenant
    calendar: Tenant
    server: RunningServer
    operator: RunningOperator
    http: httpx.Client

    @property
    def audience(self) -> str:
        return f"https://{self.calendar.namespace}.test"

    def secret(self, tenant: Tenant, name: str) -> dict[str, str]:
        body = json.loads(
            tenant.kubectl("get", "secret", name, "-n", tenant.namespace, "-o", "json").stdout
        )
        return {k: base64.b64decode(v).decode() for k, v in body["data"].items()}

    def grant(self, kind: str, name: str) -> None:
        """The calendar team lets the tasks team's `kind/name` read events, over HTTP too."""
        self.calendar.apply(
            custom(
                "AccessRule",
                f"{kind.lower()}-{name}",
                self.calendar.namespace,
                audience=self.audience,
                subjects=[{"kind": kind, "namespace": self.tasks.namespace, "name": name}],
                scopes=["event.view"],
                http=[{"hosts": [HOST], "paths": ["/api/events"], "scopes": ["event.view"]}],
            )
        )

    def token(self, form: dict[str, str], auth: tuple[str, str] | None = None) -> httpx.Response:
        return self.http.post(self.server.token_url, data=form, auth=auth)

    def issued(self, form: dict[str, str], auth: tuple[str, str] | None = None) -> str:
        """An access token, once the server's view has caught up with the new objects."""
        response = wait_for(
            lambda: (r := self.token(form, auth)).status_code == 200 and r,
            f"a token for {form.get('grant_type')}",
            timeout=30,
        )
        token: str = response.json()["access_token"]
        return token

    def active(self, token: str) -> bool:
        """What the calendar team's resource server learns by introspecting (RFC 7662)."""
        rs = self.resource_server
        response = self.http.post(
            self.server.issuer + "/oauth2/introspect",
            data={"token": token},
            auth=(rs["client-id"], rs["client-secret"]),
        )
        assert response.status_code == 200, response.text
        active: bool = response.json()["active"]
        return active

    def forward_auth(self, token: str) -> int:
        """What the calendar team's proxy (Traefik forwardAuth) is told."""
        response = self.http.get(
            f"/authz/forward-auth?audience={urllib.parse.quote(self.audience, safe='')}",
            headers={
                "X-Forwarded-Method": "GET",
                "X-Forwarded-Host": HOST,
                "X-Forwarded-Uri": "/api/events",
                "Authorization": f"Bearer {token}",
            },
        )
        return response.status_code

    def stands(self, token: str) -> bool:
        return self.active(token) and self.forward_auth(token) == 200

    def stopped(self, token: str) -> bool:
        return not self.active(token) and self.forward_auth(token) == 401

    def stops_within_seconds(self, token: str, what: str) -> float:
        started = time.monotonic()
        wait_for(lambda: self.stopped(token), what, timeout=WITHIN)
        return time.monotonic() - started

    @property
    def resource_server(self) -> dict[str, str]:
        return self.secret(self.calendar, "calendar-api-credentials")


@pytest.fixture
def teams(
    operator: RunningOperator, token_server: RunningServer, tenants: TenantFactory
) -> Iterator[Teams]:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    tasks, calendar = tenants(prefix + "-a"), tenants(prefix + "-b")
    # The calendar team's resource server introspects with a client of its own.
    calendar.apply(
        custom(
            "OAuth2Client",
            "calendar-api",
            calendar.namespace,
            audiences=[f"https://{calendar.namespace}.test"],
        )
    )
    wait_ready(operator.cluster, "OAuth2Client", calendar.namespace, "calendar-api")
    with httpx.Client(base_url=token_server.issuer, timeout=10, trust_env=False) as http:
        yield Teams(tasks, calendar, token_server, operator, http)


def _client(teams: Teams, name: str, **spec: object) -> dict[str, str]:
    """A tasks-team client for the calendar audience, granted event.view; its Secret."""
    teams.tasks.apply(
        custom(
            "OAuth2Client",
            name,
            teams.tasks.namespace,
            audiences=[teams.audience],
            scopes=["event.view"],
            **spec,
        )
    )
    teams.grant("OAuth2Client", name)
    wait_ready(teams.operator.cluster, "OAuth2Client", teams.tasks.namespace, name)
    return teams.secret(teams.tasks, f"{name}-credentials")


def _client_token(teams: Teams, credentials: dict[str, str]) -> str:
    return teams.issued(
        {"grant_type": "client_credentials", "scope": "event.view"},
        (credentials["client-id"], credentials["client-secret"]),
    )


@pytest.mark.parametrize("token_format", ["jwt", "opaque"])
def test_disabling_a_client_stops_its_tokens_and_re_enabling_restores_them(
    teams: Teams, token_format: str
) -> None:
    credentials = _client(teams, "tasks", tokenFormat=token_format)
    bystander = _client_token(teams, _client(teams, "bystander"))
    token = _client_token(teams, credentials)
    assert teams.stands(token)

    teams.tasks.kubectl(
        "patch", "oauth2client", "tasks", "-n", teams.tasks.namespace,
        "--type", "merge", "-p", '{"spec": {"disabled": true}}',
    )  # fmt: skip
    teams.stops_within_seconds(token, "the disabled client's token to stop")
    assert teams.stands(bystander)

    # Disabling is reversible (the Secret is kept): so are its tokens.
    teams.tasks.kubectl(
        "patch", "oauth2client", "tasks", "-n", teams.tasks.namespace,
        "--type", "merge", "-p", '{"spec": {"disabled": false}}',
    )  # fmt: skip
    wait_for(lambda: teams.stands(token), "the re-enabled client's token", timeout=WITHIN)


@pytest.mark.parametrize("token_format", ["jwt", "opaque"])
def test_deleting_a_client_stops_its_tokens_and_re_creating_it_does_not_revive_them(
    teams: Teams, token_format: str
) -> None:
    credentials = _client(teams, "tasks", tokenFormat=token_format)
    bystander = _client_token(teams, _client(teams, "bystander"))
    token = _client_token(teams, credentials)
    assert teams.stands(token)

    teams.tasks.kubectl("delete", "oauth2client", "tasks", "-n", teams.tasks.namespace)
    teams.stops_within_seconds(token, "the deleted client's token to stop")
    assert teams.stands(bystander)
    wait_for(
        lambda: (
            teams.tasks.kubectl(
                "get", "secret", "tasks-credentials", "-n", teams.tasks.namespace, check=False
            ).returncode
        ),
        "the old client's Secret to be garbage-collected",
        timeout=30,
    )

    # A client of the same name (same client id, same grants) is another object: its own
    # tokens work, the old ones stay dead.
    fresh = _client_token(teams, _client(teams, "tasks", tokenFormat=token_format))
    assert teams.stands(fresh)
    assert teams.stopped(token)


def _robot(teams: Teams) -> tuple[dict[str, str], dict[str, str]]:
    """A gateway client and a kubemint ServiceAccount `robot` with an app password using it;
    the gateway's Secret and the password grant's form."""
    gateway = _client(teams, "gateway", grantTypes=["client_credentials", "password"])
    teams.tasks.apply(
        custom(
            "ServiceAccount",
            "robot",
            teams.tasks.namespace,
            clients=["gateway"],
            appPasswords={"secretName": "robot-password"},
        )
    )
    teams.grant("ServiceAccount", "robot")
    wait_ready(teams.operator.cluster, "ServiceAccount", teams.tasks.namespace, "robot")
    password = teams.secret(teams.tasks, "robot-password")["password"]
    form = {"grant_type": "password", "username": "robot", "password": password}
    return gateway, form


@pytest.mark.parametrize("action", ["disable", "delete"])
def test_disabling_or_deleting_a_service_account_stops_its_tokens(
    teams: Teams, action: str
) -> None:
    gateway, form = _robot(teams)
    auth = (gateway["client-id"], gateway["client-secret"])
    token = teams.issued({**form, "scope": "event.view"}, auth)
    own = _client_token(teams, gateway)  # the gateway's own token, subject = the client
    assert teams.stands(token)
    assert teams.stands(own)

    ns = teams.tasks.namespace
    if action == "disable":
        teams.tasks.kubectl(
            "patch", "serviceaccounts.kubemint.io", "robot", "-n", ns,
            "--type", "merge", "-p", '{"spec": {"disabled": true}}',
        )  # fmt: skip
    else:
        teams.tasks.kubectl("delete", "serviceaccounts.kubemint.io", "robot", "-n", ns)
    teams.stops_within_seconds(token, f"the {action}d account's token to stop")
    assert teams.stands(own)
    assert teams.token({**form, "scope": "event.view"}, auth).status_code == 401


def _pods(teams: Teams) -> None:
    """Zero-secret pods: a Kubernetes ServiceAccount `worker`, federated with the kubemint
    ServiceAccount `worker`, through the `pods` client (authMethod none)."""
    ns = teams.tasks.namespace
    teams.tasks.kubectl("create", "serviceaccount", "worker", "-n", ns)
    _client(
        teams,
        "pods",
        authMethod="none",
        grantTypes=["client_credentials", TOKEN_EXCHANGE],
    )
    teams.tasks.apply(
        custom(
            "ServiceAccount",
            "worker",
            ns,
            clients=["pods"],
            federation={"kubernetes": [{"serviceAccountName": "worker"}]},
        )
    )
    teams.grant("ServiceAccount", "worker")
    wait_ready(teams.operator.cluster, "ServiceAccount", ns, "worker")


def _projected(teams: Teams) -> str:
    """A bound token from the API server (TokenRequest), as the kubelet would mount it."""
    return teams.tasks.kubectl(
        "create", "token", "worker", "-n", teams.tasks.namespace,
        "--audience", teams.server.issuer,
    ).stdout.strip()  # fmt: skip


def _assertion_form(teams: Teams, projected: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": f"{teams.tasks.namespace}.pods",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": projected,
        "scope": "event.view",
    }


def _exchange_form(teams: Teams, projected: str) -> dict[str, str]:
    return {
        "grant_type": TOKEN_EXCHANGE,
        "client_id": f"{teams.tasks.namespace}.pods",
        "subject_token": projected,
        "subject_token_type": JWT_TYPE,
        "scope": "event.view",
    }


def test_deleting_the_kubernetes_service_account_refuses_its_projected_tokens(
    teams: Teams,
) -> None:
    _pods(teams)
    projected = _projected(teams)
    token = teams.issued(_assertion_form(teams, projected))
    exchanged = teams.issued(_exchange_form(teams, projected))
    assert teams.stands(token)
    assert teams.stands(exchanged)

    teams.tasks.kubectl("delete", "serviceaccount", "worker", "-n", teams.tasks.namespace)
    refused = wait_for(
        lambda: (r := teams.token(_assertion_form(teams, projected))).status_code == 401 and r,
        "the deleted ServiceAccount's projected token to be refused as client_assertion",
        timeout=WITHIN,
    )
    assert refused.json()["error"] == "invalid_client"
    exchange = teams.token(_exchange_form(teams, projected))
    assert (exchange.status_code, exchange.json()["error"]) == (400, "invalid_grant")
    # The access tokens it was exchanged for stop too.
    teams.stops_within_seconds(token, "the token issued for the projected token to stop")
    assert teams.stopped(exchanged)

    # Re-created with the same name, it is another ServiceAccount (another uid): its new
    # tokens work, the old one stays refused.
    teams.tasks.kubectl("create", "serviceaccount", "worker", "-n", teams.tasks.namespace)
    fresh = teams.issued(_assertion_form(teams, _projected(teams)))
    assert teams.stands(fresh)
    assert teams.token(_assertion_form(teams, projected)).status_code == 401
    assert teams.token(_exchange_form(teams, projected)).status_code == 400
    assert teams.stopped(token)
