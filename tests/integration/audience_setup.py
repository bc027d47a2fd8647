"""What the audience-ownership attack tests share: tenants' clients and rules for one audience,
token requests and forward-auth checks against the real token server, status read as a tenant."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.integration.conftest import RunningServer
from tests.integration.kube_helpers import custom, wait_for
from tests.integration.tenants import Tenant

HOST = "api.example.com"
RELEASE = "kubemint.io/release-audience"


@dataclass(frozen=True)
class Credentials:
    client_id: str
    secret: str


def client(tenant: Tenant, name: str, audience: str, scopes: list[str]) -> Credentials:
    """An OAuth2Client in the tenant's namespace for `audience`; its mounted credentials."""
    tenant.apply(
        custom("OAuth2Client", name, tenant.namespace, audiences=[audience], scopes=scopes)
    )

    def read() -> Credentials | None:
        result = tenant.kubectl(
            "get", "secret", f"{name}-credentials", "-n", tenant.namespace, "-o", "json",
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return None
        data = json.loads(result.stdout)["data"]
        return Credentials(
            base64.b64decode(data["client-id"]).decode(),
            base64.b64decode(data["client-secret"]).decode(),
        )

    return wait_for(read, f"the credentials of {tenant.namespace}/{name}")


def rule(
    tenant: Tenant,
    name: str,
    audience: str,
    subject: str,
    scopes: list[str],
    http: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    subjects: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """An AccessRule in the tenant's namespace granting its own client `subject`."""
    body = custom(
        "AccessRule",
        name,
        tenant.namespace,
        audience=audience,
        subjects=subjects or [{"kind": "OAuth2Client", "name": subject}],
        scopes=scopes,
        **({"http": http} if http else {}),
    )
    if annotations:
        body["metadata"]["annotations"] = annotations
    return body


def status(tenant: Tenant, name: str) -> dict[str, Any]:
    """An AccessRule's status as its own tenant reads it."""
    result = tenant.kubectl("get", "accessrule", name, "-n", tenant.namespace, "-o", "json")
    found: dict[str, Any] = json.loads(result.stdout).get("status") or {}
    return found


def condition(tenant: Tenant, name: str, kind: str = "Ready") -> dict[str, Any]:
    for cond in status(tenant, name).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def wait_reason(tenant: Tenant, name: str, reason: str, timeout: float = 30) -> dict[str, Any]:
    """Wait until the rule's Ready condition has `reason` for its current generation."""

    def probe() -> dict[str, Any] | None:
        result = tenant.kubectl("get", "accessrule", name, "-n", tenant.namespace, "-o", "json")
        obj = json.loads(result.stdout)
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if (
                cond.get("type") == "Ready"
                and cond.get("reason") == reason
                and cond.get("observedGeneration") == obj["metadata"]["generation"]
            ):
                return dict(cond)
        return None

    return wait_for(probe, f"AccessRule {tenant.namespace}/{name} reason {reason}", timeout)


class Api:
    """The token server as a workload and as a proxy see it, for one audience."""

    def __init__(self, server: RunningServer, audience: str) -> None:
        self.server = server
        self.audience = audience
        self.http = httpx.Client(base_url=server.issuer, timeout=10, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def token(self, who: Credentials, scope: str) -> httpx.Response:
        return self.http.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": scope, "audience": self.audience},
            auth=(who.client_id, who.secret),
        )

    def access_token(self, who: Credentials, scope: str) -> str | None:
        response = self.token(who, scope)
        return str(response.json()["access_token"]) if response.status_code == 200 else None

    def forward_auth(self, token: str, method: str, path: str) -> int:
        """The status nginx auth_request would get for this request."""
        return self.http.get(
            "/authz/auth-request",
            params={"audience": self.audience},
            headers={
                "X-Original-URL": f"https://{HOST}{path}",
                "X-Original-Method": method,
                "Authorization": f"Bearer {token}",
            },
        ).status_code


def refused(response: httpx.Response) -> bool:
    """The token endpoint said no with a policy error (not an authentication failure)."""
    return response.status_code in (400, 403) and response.json().get("error") in (
        "invalid_scope",
        "access_denied",
    )


def hold(check: Callable[[], str | None], seconds: float, what: str) -> int:
    """Assert that `check` keeps passing (returns None) on every poll for `seconds`; returns
    how many times it was checked. A failure is reported with its description."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while True:
        problem = check()
        rounds += 1
        assert problem is None, f"{what}: {problem} (after {rounds} checks)"
        if time.monotonic() >= deadline:
            return rounds
        time.sleep(0.1)
