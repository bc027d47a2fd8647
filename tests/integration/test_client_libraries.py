"""Standard OAuth client libraries, with their defaults, against the real token server: authlib
(Python), openid-client (Node), golang.org/x/oauth2/clientcredentials (Go) and the Nimbus
OAuth 2.0 SDK (Java), each with every client authentication method it supports. Each runs the
program in examples/clients/ as its own process, as a workload would; the token it gets is
verified. Also: a client assertion accepted by one replica is refused by another.

The Node, Go and Java programs are built once, in parallel and while the clients are being set
up, into a temporary directory (the npm, Go and Maven caches make later runs fast). A missing
toolchain fails the tests: these programs are documentation that must keep working.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from kubernetes import config as kube_config

from kubemint.crypto.client_assertions import private_key_assertion
from kubemint.devcluster.components import token_server_process, wait_for_http
from kubemint.devcluster.controlplane import free_port
from kubemint.store.assertion_jtis import SELECTOR, AssertionJtis, record_name
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.example_programs import Builds, Examples, building, command_line, ready
from tests.integration.kube_helpers import apply, custom, secret_data, wait_for, wait_ready

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "clients"
PROGRAMS = Examples(EXAMPLES, "get-token.mjs", "get-token-go", "get-token.jar")
METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt")
# What each library supports for client_credentials (x/oauth2 has no JWT client auth; its
# default AuthStyleAutoDetect tries Basic, then the form, so one program covers both).
SUPPORTED = {
    "python-authlib": METHODS,
    "node-openid-client": METHODS,
    "java-nimbus": METHODS,
    "go-x-oauth2": ("client_secret_basic", "client_secret_post"),
}
CASES = [(library, method) for library, methods in SUPPORTED.items() for method in methods]

pytestmark = pytest.mark.timeout(900)  # cold builds download openid-client, x/oauth2, Nimbus


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builds]:
    with building(PROGRAMS, tmp_path_factory.mktemp("client-libraries")) as built:
        yield {
            "node-openid-client": built["node"],
            "go-x-oauth2": built["go"],
            "java-nimbus": built["java"],
            "python-authlib": ready([sys.executable, str(EXAMPLES / "python" / "get_token.py")]),
        }


# --- one client per authentication method ---------------------------------------------------


@dataclass
class Clients:
    audience: str
    credentials: dict[str, dict[str, str]]  # by method: the client's Secret data
    rsa_pem: Path  # authlib's PrivateKeyJWT signs RS256 by default
    ec_pem: Path  # openid-client and Nimbus: ES256 (a P-256 key)


def _pkcs8(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _public_jwk(key: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(
        jwt.algorithms.get_default_algorithms()[
            "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        ].to_jwk(key.public_key())
    )
    return jwk


@pytest.fixture(scope="module")
def clients(
    operator: RunningOperator,
    token_server: RunningServer,
    builds: Builds,  # started first: the builds overlap the set-up
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Clients]:
    cluster = operator.cluster
    namespace = f"libs-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    audience = f"https://{namespace}.api.test"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys_dir = tmp_path_factory.mktemp("client-keys")
    (keys_dir / "rsa.pem").write_text(_pkcs8(rsa_key))
    (keys_dir / "ec.pem").write_text(_pkcs8(ec_key))
    jwks = {"keys": [_public_jwk(rsa_key), _public_jwk(ec_key)]}
    names = {method: method.replace("_", "-") for method in METHODS}
    apply(
        cluster,
        *(
            custom(
                "OAuth2Client",
                name,
                namespace,
                audiences=[audience],
                scopes=["read", "write"],
                authMethod=method,
                **({"jwks": jwks} if method == "private_key_jwt" else {}),
            )
            for method, name in names.items()
        ),
        custom(
            "AccessRule",
            "api",
            namespace,
            audience=audience,
            scopes=["read"],
            subjects=[{"kind": "OAuth2Client", "name": name} for name in names.values()],
        ),
    )
    wait_ready(cluster, "AccessRule", namespace, "api")
    credentials = {}
    for method, name in names.items():
        wait_ready(cluster, "OAuth2Client", namespace, name)
        data = secret_data(cluster, namespace, f"{name}-credentials")
        assert data is not None
        credentials[method] = data
    try:
        yield Clients(audience, credentials, keys_dir / "rsa.pem", keys_dir / "ec.pem")
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _get_token(
    command: list[str], library: str, method: str, clients: Clients, server: RunningServer
) -> subprocess.CompletedProcess[str]:
    data = clients.credentials[method]
    env = {
        "KUBEMINT_ISSUER": server.issuer,
        "KUBEMINT_TOKEN_URL": server.token_url,
        "KUBEMINT_CLIENT_ID": data["client-id"],
        "KUBEMINT_AUTH_METHOD": method,
        "KUBEMINT_SCOPE": "read",
    }
    if method == "private_key_jwt":
        pem = clients.rsa_pem if library == "python-authlib" else clients.ec_pem
        env["KUBEMINT_PRIVATE_KEY_FILE"] = str(pem)
    else:
        env["KUBEMINT_CLIENT_SECRET"] = data["client-secret"]
    return subprocess.run(
        command,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(("library", "method"), CASES, ids=[f"{lib}-{m}" for lib, m in CASES])
def test_a_standard_client_library_gets_a_token_with_its_defaults(
    builds: Builds,
    clients: Clients,
    token_server: RunningServer,
    library: str,
    method: str,
) -> None:
    command = command_line(builds, library)
    # The server follows the API by watch, a moment behind the Ready clients: retry briefly.
    deadline = time.monotonic() + 10
    while (run := _get_token(command, library, method, clients, token_server)).returncode != 0:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert run.returncode == 0, (
        f"{library} with {method}:\n{run.stderr}\n{token_server.log()[-3000:]}"
    )
    response = json.loads(run.stdout)
    assert response["token_type"].lower() == "bearer"
    keys = jwt.PyJWKClient(token_server.issuer + "/oauth2/jwks")
    token = response["access_token"]
    claims = jwt.decode(
        token,
        keys.get_signing_key_from_jwt(token).key,
        algorithms=["ES256"],
        audience=clients.audience,
        issuer=token_server.issuer,
    )
    assert claims["client_id"] == clients.credentials[method]["client-id"]
    assert claims["scope"] == "read"


# --- replay across replicas ------------------------------------------------------------------


def test_an_assertion_accepted_by_one_replica_is_refused_by_another(
    operator: RunningOperator, token_server: RunningServer, clients: Clients, tmp_path: Path
) -> None:
    """The attack: capture a client's assertion (authlib's lasts an hour) and replay it to the
    other replica behind the load balancer. Each replica remembers only what it accepted, so
    this worked once per replica; the jti's first use is now claimed in the API server."""
    data = clients.credentials["private_key_jwt"]
    port = free_port()
    replica = token_server_process(
        operator.cluster,
        namespace=operator.namespace,
        issuer=operator.issuer,
        port=port,
        name="replica",
        log_dir=tmp_path,
        extra_env={"KUBEMINT_AUTH_FAILURES_PER_SOURCE": "100000"},
    )
    replica.start()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", replica, timeout=90)  # a busy machine
        other = f"http://127.0.0.1:{port}/oauth2/token"

        def post(url: str, assertion: str) -> httpx.Response:
            return httpx.post(
                url,
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": (
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                    ),
                    "client_assertion": assertion,
                },
                timeout=10,
            )

        def assertion() -> str:
            return private_key_assertion(
                data["client-id"], clients.ec_pem.read_text(), token_server.token_url
            )

        captured = assertion()
        assert post(token_server.token_url, captured).status_code == 200
        replayed = post(other, captured)
        assert (replayed.status_code, replayed.json()["error"]) == (401, "invalid_client")
        # The victim keeps working on both replicas with fresh assertions.
        wait_for(lambda: post(other, assertion()).status_code == 200, "the replica to issue")
        assert post(token_server.token_url, assertion()).status_code == 200
        # The claim is the named object; the sweeper leaves it while it is live and deletes it
        # once it cannot be accepted any more (one deleteCollection for all).
        jti = jwt.decode(captured, options={"verify_signature": False})["jti"]
        name = record_name(data["client-id"], jti)

        def listed() -> str:
            return operator.cluster.kubectl(
                "get", "configmaps", "-n", operator.namespace, "-l", SELECTOR, "-o", "name"
            ).stdout

        assert f"configmap/{name}" in listed()
        api = kube_config.new_client_from_config(config_file=str(operator.cluster.kubeconfig))
        store = AssertionJtis(api, operator.namespace, longest=3600 + 30)
        store.sweep(time.time())
        assert f"configmap/{name}" in listed()
        store.sweep(time.time() + 2 * 3600)
        assert listed().strip() == ""
    finally:
        replica.stop()


def test_supertokens_json_token_request_against_the_real_server(
    clients: Clients, token_server: RunningServer
) -> None:
    """SuperTokens' documented request shape (an extension): JSON, `scope` as an array."""
    data = clients.credentials["client_secret_post"]
    body = {
        "grant_type": "client_credentials",
        "client_id": data["client-id"],
        "client_secret": data["client-secret"],
        "scope": ["read"],
        "audience": clients.audience,
    }
    response = httpx.post(token_server.token_url, json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "read"
    # Another content type keeps its clear error.
    xml = httpx.post(
        token_server.token_url,
        content=b"<grant_type>client_credentials</grant_type>",
        headers={"content-type": "application/xml"},
        timeout=10,
    )
    assert xml.status_code == 400
    assert xml.json()["error_description"] == (
        "the request body must be application/x-www-form-urlencoded"
    )
