"""Key rotation under load never breaks verification; an API server outage never stops issuance.

These run on a control plane of their own: the outage test stops its kube-apiserver.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from kubemint.devcluster import ControlPlane, layout, resolve_binaries
from kubemint.devcluster.components import (
    metrics_url,
    token_server_process,
    wait_for_http,
    wait_for_leader,
)
from kubemint.devcluster.controlplane import free_port
from kubemint.devcluster.processes import ManagedProcess
from tests.integration.conftest import SIGNING_KEY, start_operator
from tests.integration.kube_helpers import apply, custom, secret_data, wait_for, wait_ready


class Stack:
    def __init__(
        self, plane: ControlPlane, namespace: str, issuer: str, server: ManagedProcess
    ) -> None:
        self.plane, self.namespace, self.issuer, self.server = plane, namespace, issuer, server

    def client(self, name: str, namespace: str, audience: str, **spec: Any) -> dict[str, str]:
        apply(
            self.plane,
            custom("OAuth2Client", name, namespace, audiences=[audience], scopes=["read"], **spec),
            custom(
                "AccessRule",
                name,
                namespace,
                audience=audience,
                scopes=["read"],
                subjects=[{"kind": "OAuth2Client", "name": name}],
            ),
        )
        wait_ready(self.plane, "OAuth2Client", namespace, name)
        data = secret_data(self.plane, namespace, f"{name}-credentials")
        assert data is not None
        return data


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("resilience")
    with ControlPlane(resolve_binaries(), crd_paths=[layout.crds_dir()]) as plane:
        namespace = "kubemint-system"
        plane.kubectl("create", "namespace", namespace)
        plane.kubectl("apply", "-f", "-", stdin=SIGNING_KEY.format(namespace=namespace))
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        operator = start_operator(plane, namespace, "op", "kubemint-operator", logs, issuer)
        server = token_server_process(
            plane,
            namespace=namespace,
            issuer=issuer,
            port=port,
            log_dir=logs,
            extra_env={"KUBEMINT_STALE_AFTER": "2", "KUBEMINT_AUTH_FAILURES_PER_SOURCE": "100000"},
        )
        server.start()
        try:
            wait_for_leader(plane, namespace, "kubemint-operator", "op")
            wait_for_http(issuer + "/readyz", server)
            yield Stack(plane, namespace, issuer, server)
        finally:
            server.stop()
            operator.stop()


def _token(http: httpx.Client, stack: Stack, data: dict[str, str]) -> httpx.Response:
    auth = base64.b64encode(f"{data['client-id']}:{data['client-secret']}".encode()).decode()
    return http.post(
        stack.issuer + "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {auth}"},
    )


def test_rotating_keys_while_issuing_never_fails_a_verifier_that_refreshes_within_prepublish(
    stack: Stack,
) -> None:
    namespace = f"rot-{uuid.uuid4().hex[:6]}"
    stack.plane.kubectl("create", "namespace", namespace)
    rotation = {"every": "4s", "prePublish": "2s", "retainAfter": "12s"}
    apply(
        stack.plane,
        custom("SigningKey", "fast", stack.namespace, algorithm="ES256", rotation=rotation),
    )
    wait_ready(stack.plane, "SigningKey", stack.namespace, "fast")
    data = stack.client(
        "rotating", namespace, "https://rot.test", signingKey="fast", tokenLifetime="10s"
    )

    jwks_url = stack.issuer + "/oauth2/jwks"
    cache: dict[str, Any] = {"keys": httpx.get(jwks_url).json()}
    stop = threading.Event()

    def refresh() -> None:  # a verifier that re-reads JWKS every second (< prePublish)
        while not stop.wait(1.0):
            cache["keys"] = httpx.get(jwks_url).json()

    refresher = threading.Thread(target=refresh, daemon=True)
    refresher.start()
    kids: set[str] = set()
    failures, issued = 0, 0
    deadline = time.monotonic() + 14  # three rotations and more
    with httpx.Client(timeout=5) as http:
        wait_for(lambda: _token(http, stack, data).status_code == 200, "a first token")
        while time.monotonic() < deadline:
            response = _token(http, stack, data)
            assert response.status_code == 200, response.text
            token = response.json()["access_token"]
            kid = jwt.get_unverified_header(token)["kid"]
            kids.add(kid)
            issued += 1
            keys = {k["kid"]: k for k in cache["keys"]["keys"]}
            try:  # the cached set only: no refresh on an unknown kid
                key = jwt.PyJWK(keys[kid]).key
                jwt.decode(token, key, algorithms=["ES256"], audience="https://rot.test")
            except (KeyError, jwt.PyJWTError):
                failures += 1
            time.sleep(0.02)
    stop.set()
    refresher.join()
    assert len(kids) >= 3, f"expected several rotations, saw kids {kids}"
    assert issued > 100
    assert failures == 0, f"{failures} of {issued} tokens failed verification"


def test_tokens_are_issued_while_the_api_server_is_down_and_changes_resume_after(
    stack: Stack,
) -> None:
    namespace = f"out-{uuid.uuid4().hex[:6]}"
    stack.plane.kubectl("create", "namespace", namespace)
    data = stack.client("steady", namespace, "https://out.test")
    with httpx.Client(timeout=5) as http:
        wait_for(lambda: _token(http, stack, data).status_code == 200, "a first token")
        stack.plane.stop_apiserver()
        try:
            for _ in range(5):
                assert _token(http, stack, data).status_code == 200
            ready = wait_for(
                lambda: (r := http.get(stack.issuer + "/readyz")).status_code == 503 and r,
                "/readyz to report the view as stale",
                timeout=20,
            )
            assert ready.json()["status"] == "stale"
            metrics = http.get(metrics_url(stack.server)).text
            stale = next(
                line
                for line in metrics.splitlines()
                if line.startswith("kubemint_view_stale_seconds ")
            )
            assert float(stale.split()[1]) > 0
            assert _token(http, stack, data).status_code == 200  # still issuing
        finally:
            stack.plane.start_apiserver()
        wait_for(
            lambda: http.get(stack.issuer + "/readyz").status_code == 200,
            "the view to be current again",
            timeout=30,
        )
        fresh = stack.client("fresh", namespace, "https://out.test")
        wait_for(
            lambda: _token(http, stack, fresh).status_code == 200,
            "a client created after the outage to work",
            timeout=30,
        )
