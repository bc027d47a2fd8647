"""What the forward-auth tests share: a calendar client holding event.view and an AccessRule
whose spec.http maps the Calendar API's requests to scopes, in the test's own namespace."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import apply, custom, secret_data, wait_for, wait_ready

HOST = "calendar.example.com"
HTTP_RULES = [
    {"hosts": [HOST], "paths": ["/api/events"], "methods": ["GET"], "scopes": ["event.view"]},
    {"hosts": [HOST], "paths": ["/api/events"], "methods": ["POST"], "scopes": ["event.create"]},
]


@dataclass(frozen=True)
class CalendarClient:
    audience: str
    credentials: dict[str, str]  # the client's Secret: client-id, client-secret, ...
    token: str  # an access token holding event.view


def calendar_client(
    operator: RunningOperator, token_server: RunningServer, namespace: str
) -> CalendarClient:
    audience = f"https://{namespace}.calendar.test"
    apply(
        operator.cluster,
        custom(
            "OAuth2Client",
            "web",
            namespace,
            audiences=[audience],
            scopes=["event.view", "event.create"],
        ),
        custom(
            "AccessRule",
            "calendar",
            namespace,
            audience=audience,
            scopes=["event.view"],
            subjects=[{"kind": "OAuth2Client", "name": "web"}],
            http=HTTP_RULES,
        ),
    )
    wait_ready(operator.cluster, "OAuth2Client", namespace, "web")
    wait_ready(operator.cluster, "AccessRule", namespace, "calendar")
    credentials = secret_data(operator.cluster, namespace, "web-credentials") or {}
    with httpx.Client(base_url=token_server.issuer, timeout=10, trust_env=False) as http:

        def issue() -> str | None:
            response = http.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials", "scope": "event.view"},
                auth=(credentials["client-id"], credentials["client-secret"]),
            )
            return response.json()["access_token"] if response.status_code == 200 else None

        token = wait_for(issue, "a token for the calendar client", timeout=20)
    return CalendarClient(audience, credentials, token)
