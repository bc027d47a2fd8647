"""End to end: kubectl apply → operator → Secret → token over HTTP → verified with PyJWT."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from kubemint.crypto import keys
from kubemint.crypto.jwt import Signer
from kubemint.devcluster.components import token_server_process, wait_for_http
from kubemint.devcluster.controlplane import free_port
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import apply, custom, secret_data, wait_for, wait_ready

API = "https://calendar.test"


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture
def calendar(operator: RunningOperator, namespace: str) -> Iterator[str]:
    """A namespace that owns the audience `https://calendar-<ns>.test` (a rule lives there)."""
    name = f"{namespace}-cal"
    operator.cluster.kubectl("create", "namespace", name)
    yield name
    operator.cluster.kubectl("delete", "namespace", name, "--wait=false")


def _audience(calendar: str) -> str:
    return f"https://{calendar}.test"


def _setup(
    op: RunningOperator,
    namespace: str,
    calendar: str,
    *,
    auth: str = "client_secret_basic",
    scopes: tuple[str, ...] = ("event.view", "event.create", "event.delete"),
    granted: tuple[str, ...] = ("event.view", "event.create"),
    **client: Any,
) -> dict[str, str]:
    apply(
        op.cluster,
        custom(
            "OAuth2Client",
            "tasks",
            namespace,
            audiences=[_audience(calendar)],
            scopes=list(scopes),
            authMethod=auth,
            **client,
        ),
        custom(
            "AccessRule",
            "tasks",
            calendar,
            audience=_audience(calendar),
            subjects=[{"kind": "OAuth2Client", "namespace": namespace, "name": "tasks"}],
            scopes=list(granted),
        ),
    )
    wait_ready(op.cluster, "OAuth2Client", namespace, "tasks")
    wait_ready(op.cluster, "AccessRule", calendar, "tasks")
    data = secret_data(op.cluster, namespace, "tasks-credentials")
    assert data is not None
    return data


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _token(
    http: httpx.Client, server: RunningServer, data: dict[str, str], expect: int = 200, **form: str
) -> httpx.Response:
    """client_credentials with client_secret_basic, retried briefly until the answer has the
    expected status: the server follows the API by watch, a moment behind `kubectl apply`."""
    body = {"grant_type": "client_credentials", **form}
    headers = _basic(data["client-id"], data["client-secret"])
    response = http.post(server.token_url, data=body, headers=headers)
    deadline = time.monotonic() + 10
    while response.status_code != expect and time.monotonic() < deadline:
        time.sleep(0.2)
        response = http.post(server.token_url, data=body, headers=headers)
    return response


def _verify(token: str, server: RunningServer, audience: str) -> dict[str, Any]:
    keys = jwt.PyJWKClient(server.issuer + "/oauth2/jwks")
    key = keys.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=["ES256"],
        audience=audience,
        issuer=server.issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    return claims


def test_a_workload_gets_a_token_with_its_mounted_secret_and_it_verifies(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    data = _setup(operator, namespace, calendar)
    assert data["token-url"] == token_server.token_url
    response = _token(http, token_server, data, scope="event.view")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "event.view"
    assert response.headers["cache-control"] == "no-store"

    claims = _verify(body["access_token"], token_server, _audience(calendar))
    assert claims["sub"] == claims["client_id"] == data["client-id"]
    assert claims["scope"] == "event.view"
    assert claims["exp"] - claims["iat"] == 900
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"


def test_no_scope_requested_means_everything_allowed(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    data = _setup(operator, namespace, calendar)
    body = _token(http, token_server, data).json()
    # client allows view/create/delete; the rule grants view/create: the intersection.
    assert body["scope"] == "event.create event.view"


def test_client_secret_post_works_and_the_method_is_pinned(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    data = _setup(operator, namespace, calendar, auth="client_secret_post")
    form = {
        "grant_type": "client_credentials",
        "client_id": data["client-id"],
        "client_secret": data["client-secret"],
    }
    ok = wait_for(
        lambda: (r := http.post(token_server.token_url, data=form)).status_code == 200 and r,
        "a token via client_secret_post",
        timeout=10,
    )
    assert _verify(ok.json()["access_token"], token_server, _audience(calendar))
    basic = http.post(
        token_server.token_url,
        data={"grant_type": "client_credentials"},
        headers=_basic(data["client-id"], data["client-secret"]),
    )
    assert basic.status_code == 401
    assert basic.json()["error"] == "invalid_client"


def test_an_app_password_gets_a_token_for_the_service_account(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    apply(
        operator.cluster,
        custom(
            "OAuth2Client",
            "gateway",
            namespace,
            audiences=[_audience(calendar)],
            authMethod="none",
            grantTypes=["password"],
            scopes=["event.view"],
        ),
        custom(
            "ServiceAccount",
            "robot",
            namespace,
            clients=["gateway"],
            appPasswords={"secretName": "robot-password"},
            claims={"team": "payments"},
        ),
        custom(
            "AccessRule",
            "robot",
            calendar,
            audience=_audience(calendar),
            subjects=[{"kind": "ServiceAccount", "namespace": namespace, "name": "robot"}],
            scopes=["event.view"],
            accountClaims=["team"],  # the account's own claim, which this API takes
        ),
    )
    wait_ready(operator.cluster, "ServiceAccount", namespace, "robot")
    password = (secret_data(operator.cluster, namespace, "robot-password") or {})["password"]
    form = {
        "grant_type": "password",
        "client_id": f"{namespace}.gateway",
        "username": "robot",
        "password": password,
    }
    response = wait_for(
        lambda: (r := http.post(token_server.token_url, data=form)).status_code == 200 and r,
        "a token for the app password",
        timeout=10,
    )
    claims = _verify(response.json()["access_token"], token_server, _audience(calendar))
    assert claims["sub"] == f"kubemint:serviceaccount:{namespace}:robot"
    assert claims["team"] == "payments"
    wrong = http.post(token_server.token_url, data={**form, "password": password + "x"})
    assert wrong.status_code == 401


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "client_credentials", "scope": "event.delete"}, 400, "invalid_scope"),
        ({"grant_type": "client_credentials", "scope": "admin"}, 400, "invalid_scope"),
        (
            {"grant_type": "client_credentials", "audience": "https://other.test"},
            400,
            "invalid_target",
        ),
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
        ({}, 400, "invalid_request"),
    ],
    ids=[
        "a scope the rule does not grant is refused, not dropped",
        "a scope the client may never have is refused",
        "an audience the client may not request is refused",
        "an unsupported grant type is named",
        "a missing grant type is an invalid request",
    ],
)
def test_requests_beyond_what_is_allowed_are_refused(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
    form: dict[str, str],
    status: int,
    error: str,
) -> None:
    data = _setup(operator, namespace, calendar)
    _token(http, token_server, data)  # the server knows the client now
    response = http.post(
        token_server.token_url, data=form, headers=_basic(data["client-id"], data["client-secret"])
    )
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert data["client-secret"] not in response.text


def test_wrong_credentials_get_401_with_a_challenge_and_never_a_500(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    data = _setup(operator, namespace, calendar)
    _token(http, token_server, data)
    cases = [
        _basic(data["client-id"], data["client-secret"] + "x"),
        _basic("nobody", data["client-secret"]),
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Bearer something"},
    ]
    for headers in cases:
        response = http.post(
            token_server.token_url, data={"grant_type": "client_credentials"}, headers=headers
        )
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic")


def test_malformed_and_oversized_bodies_are_clear_errors(
    token_server: RunningServer, http: httpx.Client
) -> None:
    url = token_server.token_url
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases = [
        (http.post(url, content=b"grant_type=a&grant_type=b", headers=form), 400),
        # JSON is accepted (an extension); without credentials it is a client error.
        (http.post(url, json={"grant_type": "client_credentials"}), 401),
        (
            http.post(
                url,
                content=b"grant_type=client_credentials",
                headers={"Content-Type": "text/plain"},
            ),
            400,
        ),
        (http.post(url, content=b"\xff\xfe=\x00", headers=form), 400),
        (http.post(url, content=b"a=" + b"x" * 100_000, headers=form), 413),
        (http.get(url), 405),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert "error" in response.json()


def test_the_audience_owner_decides_and_a_grab_from_another_namespace_grants_nothing(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    # The calendar namespace owns the audience with a rule for someone else...
    apply(
        operator.cluster,
        custom(
            "AccessRule",
            "owner",
            calendar,
            audience=_audience(calendar),
            subjects=[{"kind": "OAuth2Client", "namespace": "elsewhere", "name": "x"}],
            scopes=["event.view"],
        ),
    )
    wait_ready(operator.cluster, "AccessRule", calendar, "owner")
    time.sleep(1.1)  # older by at least a second: a same-second claim would be a tie (unit-tested)
    # ...and the client's own namespace tries to grant itself access to that audience.
    apply(
        operator.cluster,
        custom(
            "OAuth2Client",
            "tasks",
            namespace,
            audiences=[_audience(calendar)],
            scopes=["event.view"],
        ),
        custom(
            "AccessRule",
            "grab",
            namespace,
            audience=_audience(calendar),
            subjects=[{"kind": "OAuth2Client", "name": "tasks"}],
            scopes=["event.view"],
        ),
    )
    wait_ready(operator.cluster, "OAuth2Client", namespace, "tasks")
    data = secret_data(operator.cluster, namespace, "tasks-credentials") or {}
    response = _token(http, token_server, data, expect=403)
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "access_denied"


def test_changes_to_a_client_take_effect_within_seconds(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    data = _setup(operator, namespace, calendar)
    assert _token(http, token_server, data, scope="event.create").status_code == 200
    operator.cluster.kubectl(
        "patch",
        "oauth2client",
        "tasks",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        '{"spec": {"scopes": ["event.view"]}}',
    )
    refused = wait_for(
        lambda: (
            (r := _token(http, token_server, data, scope="event.create")).status_code == 400 and r
        ),
        "the removed scope to be refused",
        timeout=10,
    )
    assert refused.json()["error"] == "invalid_scope"
    operator.cluster.kubectl(
        "patch",
        "oauth2client",
        "tasks",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        '{"spec": {"disabled": true}}',
    )
    wait_for(
        lambda: _token(http, token_server, data, 400).status_code == 400,
        "the disabled client to be refused",
        timeout=10,
    )


def test_failed_authentication_is_rate_limited_with_retry_after(
    token_server: RunningServer, http: httpx.Client
) -> None:
    client_id = f"guess-{uuid.uuid4().hex[:6]}"
    statuses = []
    for _ in range(12):
        response = http.post(
            token_server.token_url,
            data={"grant_type": "client_credentials"},
            headers=_basic(client_id, "guess"),
        )
        statuses.append(response.status_code)
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]
    assert int(response.headers["retry-after"]) > 0


def test_discovery_jwks_health_and_metrics(
    operator: RunningOperator, token_server: RunningServer, http: httpx.Client
) -> None:
    meta = http.get(token_server.issuer + "/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == token_server.issuer
    assert meta["token_endpoint"] == token_server.token_url
    assert set(meta["grant_types_supported"]) == {
        "client_credentials",
        "password",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    }
    assert http.get(token_server.issuer + "/.well-known/openid-configuration").json() == meta

    jwks = http.get(token_server.issuer + "/oauth2/jwks")
    kids = {k["kid"] for k in jwks.json()["keys"]}
    key = operator.cluster.get_json(
        f"/apis/kubemint.io/v1alpha1/namespaces/{operator.namespace}/signingkeys/default"
    )
    assert {key["status"]["active"]["kid"], key["status"]["next"]["kid"]} <= kids
    assert all("d" not in k for k in jwks.json()["keys"])
    max_age = int(jwks.headers["cache-control"].split("max-age=")[1])
    assert 0 < max_age < 24 * 3600  # below the default prePublish of 24h

    assert http.get(token_server.issuer + "/healthz").status_code == 200
    ready = http.get(token_server.issuer + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    metrics = http.get(token_server.metrics_url).text
    assert "kubemint_tokens_total" in metrics
    assert "kubemint_view_stale_seconds 0.0" in metrics


def test_the_audit_log_has_a_line_per_request_and_no_secrets(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    data = _setup(operator, namespace, calendar)
    token = _token(http, token_server, data).json()["access_token"]
    time.sleep(0.2)
    log = token_server.log()
    assert f'"client_id": "{data["client-id"]}"' in log
    assert '"outcome": "issued"' in log
    assert data["client-secret"] not in log
    assert token not in log


def _federation(op: RunningOperator, namespace: str, calendar: str, grants: list[str]) -> None:
    """A `none` client, a kubemint ServiceAccount federated with Kubernetes SA `worker`, and a
    rule granting the account; returns once the account is Ready."""
    op.cluster.kubectl("create", "serviceaccount", "worker", "-n", namespace)
    op.cluster.kubectl("create", "serviceaccount", "stranger", "-n", namespace)
    apply(
        op.cluster,
        custom(
            "OAuth2Client",
            "pods",
            namespace,
            audiences=[_audience(calendar)],
            authMethod="none",
            grantTypes=grants,
            scopes=["event.view"],
        ),
        custom(
            "ServiceAccount",
            "worker",
            namespace,
            clients=["pods"],
            federation={"kubernetes": [{"serviceAccountName": "worker"}]},
        ),
        custom(
            "AccessRule",
            "worker",
            calendar,
            audience=_audience(calendar),
            subjects=[{"kind": "ServiceAccount", "namespace": namespace, "name": "worker"}],
            scopes=["event.view"],
        ),
    )
    wait_ready(op.cluster, "ServiceAccount", namespace, "worker")


def _projected(op: RunningOperator, namespace: str, sa: str, audience: str) -> str:
    return op.cluster.kubectl(
        "create", "token", sa, "-n", namespace, "--audience", audience
    ).stdout.strip()


def _post_until(
    http: httpx.Client, url: str, form: dict[str, str], expect: int = 200
) -> httpx.Response:
    response = http.post(url, data=form)
    deadline = time.monotonic() + 10
    while response.status_code != expect and time.monotonic() < deadline:
        time.sleep(0.2)
        response = http.post(url, data=form)
    return response


def test_a_pod_authenticates_with_its_projected_service_account_token(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    _federation(operator, namespace, calendar, ["client_credentials"])
    token = _projected(operator, namespace, "worker", token_server.issuer)
    form = {
        "grant_type": "client_credentials",
        "client_id": f"{namespace}.pods",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": token,
    }
    response = _post_until(http, token_server.token_url, form)
    assert response.status_code == 200, response.text
    claims = _verify(response.json()["access_token"], token_server, _audience(calendar))
    assert claims["sub"] == f"kubemint:serviceaccount:{namespace}:worker"
    assert claims["client_id"] == f"{namespace}.pods"

    # authentik: the same JWT where a client secret would go.
    as_secret = http.post(
        token_server.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": f"{namespace}.pods",
            "client_secret": token,
        },
    )
    assert as_secret.status_code == 200, as_secret.text


@pytest.mark.parametrize(
    ("who", "audience_is_issuer"),
    [("stranger", True), ("worker", False)],
    ids=[
        "a Kubernetes ServiceAccount that is not federated is refused",
        "a projected token for another audience is refused",
    ],
)
def test_projected_tokens_that_do_not_fit_are_refused(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
    who: str,
    audience_is_issuer: bool,
) -> None:
    _federation(operator, namespace, calendar, ["client_credentials"])
    audience = token_server.issuer if audience_is_issuer else "https://kubernetes.default.svc"
    form = {
        "grant_type": "client_credentials",
        "client_id": f"{namespace}.pods",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": _projected(operator, namespace, who, audience),
    }
    time.sleep(1)  # let the server's view catch up, so the refusal is not a lag artefact
    response = http.post(token_server.token_url, data=form)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_token_exchange_turns_a_projected_token_into_an_access_token(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    _federation(operator, namespace, calendar, ["urn:ietf:params:oauth:grant-type:token-exchange"])
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "client_id": f"{namespace}.pods",
        "subject_token": _projected(operator, namespace, "worker", token_server.issuer),
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "resource": _audience(calendar),
        "scope": "event.view",
    }
    response = _post_until(http, token_server.token_url, form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    claims = _verify(body["access_token"], token_server, _audience(calendar))
    assert claims["sub"] == f"kubemint:serviceaccount:{namespace}:worker"
    bad = http.post(token_server.token_url, data={**form, "subject_token": "not.a.jwt"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_grant")


def test_the_jwt_bearer_grant_accepts_a_federated_assertion(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    _federation(operator, namespace, calendar, ["urn:ietf:params:oauth:grant-type:jwt-bearer"])
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "client_id": f"{namespace}.pods",
        "assertion": _projected(operator, namespace, "worker", token_server.issuer),
    }
    response = _post_until(http, token_server.token_url, form)
    assert response.status_code == 200, response.text
    # The client does not allow client_credentials: the same token cannot be used that way.
    refused = http.post(
        token_server.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": f"{namespace}.pods",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": form["assertion"],
        },
    )
    assert (refused.status_code, refused.json()["error"]) == (400, "unauthorized_client")


def _introspect(
    http: httpx.Client, server: RunningServer, data: dict[str, str], token: str
) -> httpx.Response:
    return http.post(
        server.issuer + "/oauth2/introspect",
        data={"token": token},
        headers=_basic(data["client-id"], data["client-secret"]),
    )


def test_introspection_needs_client_authentication_and_reads_back_claims(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    data = _setup(operator, namespace, calendar)
    token = _token(http, token_server, data, scope="event.view").json()["access_token"]
    body = _introspect(http, token_server, data, token).json()
    assert body["active"] is True
    assert (body["scope"], body["client_id"], body["aud"]) == (
        "event.view",
        data["client-id"],
        _audience(calendar),
    )
    assert _introspect(http, token_server, data, "garbage").json() == {"active": False}
    anonymous = http.post(token_server.issuer + "/oauth2/introspect", data={"token": token})
    assert anonymous.status_code == 401


def test_an_opaque_token_is_readable_only_through_introspection(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    data = _setup(operator, namespace, calendar, tokenFormat="opaque")
    response = _token(http, token_server, data, scope="event.view")
    token = response.json()["access_token"]
    assert token.startswith("kmint_at_")
    with pytest.raises(jwt.PyJWTError):
        jwt.decode(token, options={"verify_signature": False})
    body = _introspect(http, token_server, data, token).json()
    assert body["active"] is True
    assert body["scope"] == "event.view"
    tampered = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    assert _introspect(http, token_server, data, tampered).json() == {"active": False}


def test_an_encryption_key_wraps_tokens_in_a_jwe_the_resource_server_can_open(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    apply(
        operator.cluster,
        custom("SigningKey", "enc", operator.namespace, algorithm="RSA-OAEP-256", use="enc"),
    )
    wait_ready(operator.cluster, "SigningKey", operator.namespace, "enc")
    data = _setup(operator, namespace, calendar, encryptionKey="enc")
    token = _token(http, token_server, data, scope="event.view").json()["access_token"]
    assert token.count(".") == 4  # compact JWE
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert (header["alg"], header["enc"], header["cty"]) == ("RSA-OAEP-256", "A256CBC-HS512", "JWT")
    stored = json.loads(
        (secret_data(operator.cluster, operator.namespace, "enc-signing-keys") or {})["keys.json"]
    )["keys"]
    private = next(k["privateKey"] for k in stored if k["kid"] == header["kid"])
    from joserfc import jwe as jose_jwe
    from joserfc.jwk import RSAKey

    inner = jose_jwe.decrypt_compact(
        token, RSAKey.import_key(private), algorithms=["RSA-OAEP-256", "A256CBC-HS512"]
    ).plaintext
    assert inner is not None
    claims = _verify(inner.decode(), token_server, _audience(calendar))
    assert claims["scope"] == "event.view"
    assert _introspect(http, token_server, data, token).json()["active"] is True


def test_a_revoked_token_fails_introspection_on_every_replica(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
    tmp_path: Path,
) -> None:
    data = _setup(operator, namespace, calendar)
    token = _token(http, token_server, data).json()["access_token"]
    other_port = free_port()
    replica = token_server_process(
        operator.cluster,
        namespace=operator.namespace,
        issuer=operator.issuer,
        port=other_port,
        name="replica",
        log_dir=tmp_path,
    )
    replica.start()
    try:
        wait_for_http(f"http://127.0.0.1:{other_port}/readyz", replica)
        second = RunningServer(f"http://127.0.0.1:{other_port}", replica)
        assert _introspect(http, second, data, token).json()["active"] is True

        revoked = http.post(
            token_server.issuer + "/oauth2/revoke",
            data={"token": token},
            headers=_basic(data["client-id"], data["client-secret"]),
        )
        assert revoked.status_code == 200, revoked.text
        wait_for(
            lambda: _introspect(http, second, data, token).json() == {"active": False},
            "the other replica to see the revocation",
            timeout=10,
        )
        assert _introspect(http, token_server, data, token).json() == {"active": False}
        buckets = operator.cluster.kubectl(
            "get",
            "configmaps",
            "-n",
            operator.namespace,
            "-l",
            "kubemint.io/role=revocations",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ).stdout
        assert buckets.startswith("kubemint-rv-")
        # Revoking garbage is not an error (RFC 7009 §2.2).
        assert (
            http.post(
                token_server.issuer + "/oauth2/revoke",
                data={"token": "x"},
                headers=_basic(data["client-id"], data["client-secret"]),
            ).status_code
            == 200
        )
    finally:
        replica.stop()


def test_an_external_issuer_s_when_sees_the_request(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    calendar: str,
    http: httpx.Client,
) -> None:
    """A CI job's OIDC token: accepted only from main (claims) and only for the calendar
    audience with the jwt-bearer grant (request), as the issuer's `when` says."""
    ci_key = keys.generate("ES256")
    jwks = json.dumps({"keys": [ci_key.public_jwk()]})
    operator.cluster.kubectl(
        "create",
        "secret",
        "generic",
        "ci-keys",
        "-n",
        namespace,
        f"--from-literal=jwks.json={jwks}",
    )
    jwt_bearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    audience = _audience(calendar)
    when = (
        f"claims.ref == 'refs/heads/main' && request.grant_type == '{jwt_bearer}' "
        f"&& request.audience == '{audience}' && request.subject.endsWith(':ci')"
    )
    apply(
        operator.cluster,
        custom(
            "OAuth2Client",
            "ci-gateway",
            namespace,
            audiences=[audience, "https://elsewhere.test"],
            authMethod="none",
            grantTypes=[jwt_bearer],
            scopes=["event.view"],
        ),
        custom(
            "ServiceAccount",
            "ci",
            namespace,
            clients=["ci-gateway"],
            federation={
                "issuers": [
                    {
                        "issuer": "https://ci.test",
                        "jwksSecretRef": {"name": "ci-keys"},
                        "subject": "repo:example/tasks",
                        "when": when,
                    }
                ]
            },
        ),
        custom(
            "AccessRule",
            "ci",
            calendar,
            audience=audience,
            subjects=[{"kind": "ServiceAccount", "namespace": namespace, "name": "ci"}],
            scopes=["event.view"],
        ),
    )
    wait_ready(operator.cluster, "ServiceAccount", namespace, "ci")
    signer = Signer(ci_key)

    def assertion(ref: str) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://ci.test",
            "sub": "repo:example/tasks",
            "aud": token_server.issuer,
            "ref": ref,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        return signer.sign(claims, typ="JWT")

    def form(ref: str, target: str) -> dict[str, str]:
        return {
            "grant_type": jwt_bearer,
            "client_id": f"{namespace}.ci-gateway",
            "assertion": assertion(ref),
            "audience": target,
        }

    accepted = _post_until(http, token_server.token_url, form("refs/heads/main", audience))
    assert accepted.status_code == 200, accepted.text
    claims = _verify(accepted.json()["access_token"], token_server, audience)
    assert claims["sub"] == f"kubemint:serviceaccount:{namespace}:ci"
    for ref, target in (
        ("refs/heads/dev", audience),
        ("refs/heads/main", "https://elsewhere.test"),
    ):
        refused = http.post(token_server.token_url, data=form(ref, target))
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant"), ref
