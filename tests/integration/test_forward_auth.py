"""Forward-auth over real HTTP against the real token server: nginx auth_request, Traefik
forwardAuth and Envoy ext_authz decide from AccessRule spec.http, live from the cluster."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.forward_auth_setup import HOST, HTTP_RULES, calendar_client
from tests.integration.kube_helpers import apply, custom, wait_for


@dataclass
class Calendar:
    audience: str
    namespace: str
    token: str
    credentials: dict[str, str]
    http: httpx.Client

    def nginx(self, method: str, path: str, token: str | None = None) -> httpx.Response:
        return self.http.get(
            "/authz/auth-request",
            params={"audience": self.audience},
            headers={
                "X-Original-URL": f"https://{HOST}{path}",
                "X-Original-Method": method,
                **_bearer(self.token if token is None else token),
            },
        )

    def traefik(self, method: str, path: str, **headers: str) -> httpx.Response:
        return self.http.get(
            f"/authz/forward-auth?audience={urllib.parse.quote(self.audience, safe='')}",
            headers={
                "X-Forwarded-Method": method,
                "X-Forwarded-Host": HOST,
                "X-Forwarded-Uri": path,
                **_bearer(self.token),
                **headers,
            },
        )

    def envoy(self, method: str, path: str, **headers: str) -> httpx.Response:
        return self.http.request(
            method,
            "/authz/ext-authz" + path,
            headers={
                "Host": HOST,
                "X-Kubemint-Audience": self.audience,  # Envoy's headers_to_add
                **_bearer(self.token),
                **headers,
            },
        )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture
def calendar(
    operator: RunningOperator, token_server: RunningServer, namespace: str
) -> Iterator[Calendar]:
    client = calendar_client(operator, token_server, namespace)
    with httpx.Client(base_url=token_server.issuer, timeout=10) as http:
        yield Calendar(client.audience, namespace, client.token, client.credentials, http)


def test_every_proxy_convention_allows_with_identity_headers(calendar: Calendar) -> None:
    client_id = calendar.credentials["client-id"]
    for response in (
        wait_for(lambda: _ok(calendar.nginx("GET", "/api/events?limit=5")), "nginx allow"),
        calendar.traefik("GET", "/api/events/42"),
        calendar.envoy("GET", "/api/events"),
    ):
        assert response.status_code == 200, response.text
        assert response.headers["X-Auth-Client-Id"] == client_id
        assert response.headers["X-Auth-Subject"] == client_id
        assert response.headers["X-Auth-Scope"] == "event.view"
        assert response.headers["X-Auth-Audience"] == calendar.audience


def _ok(response: httpx.Response) -> httpx.Response | None:
    return response if response.status_code == 200 else None


def test_missing_scope_is_403_with_an_insufficient_scope_challenge(calendar: Calendar) -> None:
    wait_for(lambda: _ok(calendar.nginx("GET", "/api/events")), "the rule to be served")
    for response in (
        calendar.nginx("POST", "/api/events"),
        calendar.traefik("POST", "/api/events"),
        calendar.envoy("POST", "/api/events"),
    ):
        assert response.status_code == 403, response.text
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith(f'Bearer realm="{calendar.audience}", ')
        assert 'error="insufficient_scope"' in challenge
        assert 'scope="event.create"' in challenge
        assert response.json()["error"] == "insufficient_scope"


def test_no_token_and_bad_tokens_are_401(calendar: Calendar) -> None:
    wait_for(lambda: _ok(calendar.nginx("GET", "/api/events")), "the rule to be served")
    anonymous = calendar.nginx("GET", "/api/events", token="")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == f'Bearer realm="{calendar.audience}"'
    tampered = calendar.token[:-4] + ("AAAA" if not calendar.token.endswith("AAAA") else "BBBB")
    bad = calendar.nginx("GET", "/api/events", token=tampered)
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]


def test_uncovered_paths_and_hosts_are_denied(calendar: Calendar) -> None:
    wait_for(lambda: _ok(calendar.nginx("GET", "/api/events")), "the rule to be served")
    assert calendar.nginx("GET", "/api/admin").status_code == 403
    other_host = calendar.traefik("GET", "/api/events", **{"X-Forwarded-Host": "files.test"})
    assert other_host.status_code == 403
    assert other_host.json()["error"] == "access_denied"


def test_the_audience_comes_only_from_the_proxy_configuration(calendar: Calendar) -> None:
    """Traefik and nginx forward the client's headers, Envoy the client's query string: a
    client naming an audience there must not be heard."""
    wait_for(lambda: _ok(calendar.nginx("GET", "/api/events")), "the rule to be served")
    forged_header = calendar.http.get(
        "/authz/forward-auth",
        headers={
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Host": HOST,
            "X-Forwarded-Uri": "/api/events",
            "X-Kubemint-Audience": calendar.audience,
            **_bearer(calendar.token),
        },
    )
    assert forged_header.status_code == 400
    assert "?audience=" in forged_header.json()["error_description"]
    forged_query = calendar.envoy(
        "GET", f"/api/events?audience={calendar.audience}", **{"X-Kubemint-Audience": ""}
    )
    assert forged_query.status_code == 400
    assert "X-Kubemint-Audience" in forged_query.json()["error_description"]
    assert calendar.envoy("GET", "/api/events").status_code == 200


def test_path_traversal_is_refused(calendar: Calendar) -> None:
    response = calendar.traefik("GET", "/api/events/..%2F..%2Fadmin")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_rule_edits_and_revocation_take_effect_live(
    operator: RunningOperator, calendar: Calendar
) -> None:
    wait_for(lambda: _ok(calendar.nginx("GET", "/api/events")), "the rule to be served")
    opened = [*HTTP_RULES[:1], {**HTTP_RULES[1], "scopes": ["event.view"]}]
    apply(
        operator.cluster,
        custom(
            "AccessRule",
            "calendar",
            calendar.namespace,
            audience=calendar.audience,
            scopes=["event.view"],
            subjects=[{"kind": "OAuth2Client", "name": "web"}],
            http=opened,
        ),
    )
    wait_for(lambda: _ok(calendar.nginx("POST", "/api/events")), "the edited rule to apply")
    revoked = calendar.http.post(
        "/oauth2/revoke",
        data={"token": calendar.token},
        auth=(calendar.credentials["client-id"], calendar.credentials["client-secret"]),
    )
    assert revoked.status_code == 200
    wait_for(
        lambda: calendar.nginx("GET", "/api/events").status_code == 401,
        "the revocation to reach forward-auth",
    )
