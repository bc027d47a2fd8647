"""What attack tests do over and over: fresh namespace names, a client's mounted credentials,
and a client_credentials token request for `read` on an audience."""

from __future__ import annotations

import uuid

import httpx

from kubemint.devcluster import ControlPlane
from tests.integration.conftest import RunningServer
from tests.integration.kube_helpers import secret_data, wait_for


def prefix() -> str:
    """A namespace name no other test uses (tenants then add `-a`, `-evil`, …)."""
    return f"t{uuid.uuid4().hex[:6]}"


def credentials(cluster: ControlPlane, namespace: str, name: str) -> tuple[str, str]:
    """(client id, client secret) from the client's default credentials Secret."""
    data = wait_for(
        lambda: secret_data(cluster, namespace, f"{name}-credentials"), f"{name}'s Secret"
    )
    return data["client-id"], data["client-secret"]


def token(
    http: httpx.Client, server: RunningServer, auth: tuple[str, str], audience: str
) -> httpx.Response:
    return http.post(
        server.token_url,
        data={"grant_type": "client_credentials", "audience": audience, "scope": "read"},
        auth=auth,
    )


def issued(http: httpx.Client, server: RunningServer, auth: tuple[str, str], aud: str) -> bool:
    return token(http, server, auth, aud).status_code == 200
