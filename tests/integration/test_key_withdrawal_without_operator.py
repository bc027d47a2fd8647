"""A withdrawal holds while the operator is down: every token-server replica applies the
SigningKey's kubemint.io/withdraw annotation itself, so the kid leaves JWKS within seconds,
its tokens are refused, and nothing signs (503) until a fresh key is stored. (Its own module:
it stops this module's operator.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.key_custody_setup import (
    WITHDRAW,
    client,
    forward_auth,
    introspect,
    issue,
    jwks_kids,
    kid,
)
from tests.integration.kube_helpers import get, wait_for


@pytest.fixture
def http(token_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=token_server.issuer, timeout=10, trust_env=False) as session:
        yield session


def test_a_withdrawal_holds_while_the_operator_is_down(
    operator: RunningOperator, token_server: RunningServer, namespace: str, http: httpx.Client
) -> None:
    cluster, ns = operator.cluster, operator.namespace
    audience, auth = client(operator, http, namespace, "default")
    token = issue(http, auth)
    active = kid(token)
    staged = (get(cluster, "SigningKey", ns, "default") or {})["status"]["next"]["kid"]
    assert forward_auth(http, audience, token) == 200

    operator.process.stop()
    started = time.monotonic()  # kubectl's own start-up (about 0.1 s) is counted
    cluster.kubectl("annotate", "signingkey", "default", "-n", ns, f"{WITHDRAW}={active}")
    wait_for(lambda: active not in jwks_kids(http), "the withdrawn kid to leave JWKS", 15)
    print(f"withdrawn kid absent from /oauth2/jwks after {time.monotonic() - started:.2f}s")
    assert staged not in jwks_kids(http)
    assert introspect(http, auth, token) == {"active": False}
    assert forward_auth(http, audience, token) == 401
    refused = http.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=auth)
    assert refused.status_code == 503
    assert refused.json()["error"] == "temporarily_unavailable"
