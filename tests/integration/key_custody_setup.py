"""What the key custody tests share: a client signing with a given SigningKey (with a
forward-auth rule for its audience), tokens, introspection, forward-auth and JWKS over HTTP."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import httpx

from tests.integration.conftest import RunningOperator
from tests.integration.kube_helpers import apply, custom, secret_data, wait_for, wait_ready

HOST = "calendar.example.com"
WITHDRAW = "kubemint.io/withdraw"


def client(
    op: RunningOperator, http: httpx.Client, namespace: str, key: str, **spec: Any
) -> tuple[str, tuple[str, str]]:
    """A client signing with SigningKey `key`, its audience (with a forward-auth rule), and
    its credentials."""
    audience = f"https://{namespace}.calendar.test"
    apply(
        op.cluster,
        custom(
            "OAuth2Client",
            "web",
            namespace,
            audiences=[audience],
            scopes=["event.view"],
            signingKey=key,
            **spec,
        ),
        custom(
            "AccessRule",
            "calendar",
            namespace,
            audience=audience,
            scopes=["event.view"],
            subjects=[{"kind": "OAuth2Client", "name": "web"}],
            http=[
                {"hosts": [HOST], "paths": ["/api"], "methods": ["GET"], "scopes": ["event.view"]}
            ],
        ),
    )
    wait_ready(op.cluster, "OAuth2Client", namespace, "web")
    wait_ready(op.cluster, "AccessRule", namespace, "calendar")
    data = secret_data(op.cluster, namespace, "web-credentials") or {}
    return audience, (data["client-id"], data["client-secret"])


def issue(http: httpx.Client, auth: tuple[str, str]) -> str:
    def attempt() -> str | None:
        response = http.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=auth)
        return response.json()["access_token"] if response.status_code == 200 else None

    return wait_for(attempt, "a token", timeout=20)


def introspect(http: httpx.Client, auth: tuple[str, str], token: str) -> dict[str, Any]:
    response = http.post("/oauth2/introspect", data={"token": token}, auth=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def forward_auth(http: httpx.Client, audience: str, token: str) -> int:
    response = http.get(
        f"/authz/forward-auth?audience={urllib.parse.quote(audience, safe='')}",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Host": HOST,
            "X-Forwarded-Uri": "/api/events",
        },
    )
    return response.status_code


def jwks_kids(http: httpx.Client) -> set[str]:
    return {k["kid"] for k in http.get("/oauth2/jwks").json()["keys"]}


def kid(token: str) -> str:
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    return str(header["kid"])
