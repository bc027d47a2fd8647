"""Attacks on identity, done as tenants with rights only in their own namespaces (issue 9,
findings 6 and 7): an explicit `spec.clientId` must not take another tenant's subject or
future client id, and an account's own `spec.claims` must not carry authority into another
team's tokens (nor may a token lack `scope`, which makes verifiers read other claims).

Each attack is tried at admission (the CRD refuses it) and, for what admission lets through
or what an older CRD admitted (`older_crd` below, applied by the cluster admin), against the
operator and the token server, which refuse it too. The victim keeps working throughout.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jwt
import pytest
import yaml

from kubemint.devcluster import ControlPlane, layout
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import (
    condition,
    custom,
    get,
    secret_data,
    wait_for,
    wait_ready,
)
from tests.integration.tenants import Tenant, TenantFactory

CRD_FILES = {
    "OAuth2Client": "kubemint.io_oauth2clients.yaml",
    "ServiceAccount": "kubemint.io_serviceaccounts.yaml",
}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture
def base() -> str:
    """A namespace name that is a prefix of the victim's (`<base>-a`), as in the finding."""
    return f"t{uuid.uuid4().hex[:6]}"


def _crd(kind: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load((layout.crds_dir() / CRD_FILES[kind]).read_text())
    return crd


def _spec_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"])


def _without_identity_rules(crd: dict[str, Any]) -> dict[str, Any]:
    """The CRD as a release before these rules had it: spec.clientId only had a character
    pattern, and spec.claims took any name that is not a registered claim."""
    old = copy.deepcopy(crd)
    spec = _spec_schema(old)
    client_id = spec["properties"].get("clientId")
    if client_id is not None:
        client_id["x-kubernetes-validations"] = [
            r for r in client_id["x-kubernetes-validations"] if "matches" not in r["rule"]
        ]
    claims = spec["properties"].get("claims")
    if claims is not None:
        claims.pop("x-kubernetes-validations", None)
        claims.pop("properties", None)
    return old


def _install(cluster: ControlPlane, crd: dict[str, Any]) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(crd))


@contextmanager
def older_crd(cluster: ControlPlane, kind: str, probe: dict[str, Any]) -> Iterator[None]:
    """The admin runs an older CRD for `kind` (objects it admitted stay after an upgrade):
    `probe`, refused by the current CRD, is admitted while inside. The current CRD is back,
    and refusing `probe` again, afterwards."""
    current = _crd(kind)
    # A name of its own: once the attacker's object exists, re-applying it is an update,
    # which validation ratcheting lets through under either CRD.
    text = json.dumps({**probe, "metadata": {**probe["metadata"], "name": "crd-probe"}})

    def admitted() -> bool:
        result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=text, check=False)
        return result.returncode == 0

    _install(cluster, _without_identity_rules(current))
    try:
        wait_for(admitted, f"the older {kind} CRD to admit {probe['metadata']['name']}")
        yield
    finally:
        _install(cluster, current)
        wait_for(lambda: not admitted(), f"the current {kind} CRD to be back")


def _refused(tenant: Tenant, obj: dict[str, Any]) -> str:
    """Apply as the tenant; the API server's refusal (stderr), failing if it was admitted."""
    result = tenant.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(obj), check=False)
    assert result.returncode != 0, f"{obj['kind']} {obj['metadata']['name']} was admitted"
    return result.stderr


def _not_ready(op: RunningOperator, kind: str, namespace: str, name: str) -> dict[str, Any]:
    obj = wait_ready(op.cluster, kind, namespace, name, status="False")
    return condition(obj)


def _settled(op: RunningOperator, kind: str, namespace: str, name: str) -> dict[str, Any]:
    """The Ready condition once the operator has acted on the current generation, either way."""

    def probe() -> dict[str, Any] | None:
        obj = get(op.cluster, kind, namespace, name)
        ready = condition(obj)
        current = ready.get("observedGeneration") == (obj or {})["metadata"].get("generation")
        return ready if current and ready.get("status") in ("True", "False") else None

    return wait_for(probe, f"{kind} {namespace}/{name} to be reconciled")


def _verify(token: str, server: RunningServer, audience: str) -> dict[str, Any]:
    key = jwt.PyJWKClient(server.issuer + "/oauth2/jwks").get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["ES256"], audience=audience, issuer=server.issuer
    )
    return claims


def _token(
    http: httpx.Client, server: RunningServer, form: dict[str, str], auth: tuple[str, str] | None
) -> httpx.Response:
    return http.post(server.token_url, data=form, auth=auth)


def _client_token(
    http: httpx.Client, server: RunningServer, credentials: dict[str, str], **form: str
) -> dict[str, Any]:
    """A client_credentials token with the client's mounted Secret (retried while the token
    server's view catches up with a client that just turned Ready)."""
    auth = (credentials["client-id"], credentials["client-secret"])
    response = wait_for(
        lambda: (
            (
                r := _token(http, server, {"grant_type": "client_credentials", **form}, auth)
            ).status_code
            == 200
            and r
        ),
        f"a token for {credentials['client-id']}",
        timeout=15,
    )
    body: dict[str, Any] = response.json()
    return body


def _audience(namespace: str) -> str:
    return f"https://{namespace}.api.test"


def _account_setup(
    namespace: str, name: str, audience: str, claims: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """A password client `gw` for `audience` and an account `name` with an app password."""
    account: dict[str, Any] = {"clients": ["gw"], "appPasswords": {"secretName": f"{name}-pw"}}
    if claims is not None:
        account["claims"] = claims
    return [
        custom(
            "OAuth2Client",
            "gw",
            namespace,
            audiences=[audience],
            authMethod="none",
            grantTypes=["password"],
            scopes=["event.view", "event.delete"],
        ),
        custom("ServiceAccount", name, namespace, **account),
    ]


def _password_form(op: RunningOperator, namespace: str, name: str, **form: str) -> dict[str, str]:
    data = wait_for(
        lambda: secret_data(op.cluster, namespace, f"{name}-pw"), f"{namespace}/{name}-pw"
    )
    return {
        "grant_type": "password",
        "client_id": f"{namespace}.gw",
        "username": name,
        "password": data["password"],
        **form,
    }


# --- finding 6: explicit client ids ------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_id", "message"),
    [
        (
            "kubemint:serviceaccount:{victim}:runner",
            "spec.clientId must not start with kubemint: (the prefix of kubemint ServiceAccount "
            "subjects)",
        ),
        ("legacy-id", "spec.clientId must be <namespace>.<id>"),
    ],
    ids=["a ServiceAccount subject", "an id in no namespace"],
)
def test_admission_refuses_client_ids_outside_any_namespace(
    tenants: TenantFactory, base: str, client_id: str, message: str
) -> None:
    attacker = tenants(base)
    client = custom("OAuth2Client", "squat", base, audiences=["https://x.test"], clientId=client_id)
    client["spec"]["clientId"] = client_id.format(victim=f"{base}-a")
    stderr = _refused(attacker, client)
    assert "spec.clientId" in stderr
    assert message in stderr


def test_a_tenant_cannot_pre_claim_another_namespaces_client_id(
    operator: RunningOperator,
    token_server: RunningServer,
    tenants: TenantFactory,
    base: str,
    http: httpx.Client,
) -> None:
    """Namespace `<base>` (whose name the attacker picked) sets `clientId: <base>-a.newsvc`
    before team `<base>-a` creates `newsvc`. On the old code the squatter held the id for
    good and the victim's client was refused (ClientIdConflict). Admission cannot see
    namespaces, so it admits the shape; the operator refuses the squatter and counts it for
    nothing, so the victim's client holds its own derived id and gets tokens with it."""
    attacker, victim = tenants(base), tenants(f"{base}-a")
    stolen = f"{base}-a.newsvc"
    audience = _audience(f"{base}-a")
    attacker.apply(custom("OAuth2Client", "squat", base, audiences=[audience], clientId=stolen))
    _settled(operator, "OAuth2Client", base, "squat")

    victim.apply(
        custom("OAuth2Client", "newsvc", f"{base}-a", audiences=[audience], scopes=["read"]),
        custom(
            "AccessRule",
            "api",
            f"{base}-a",
            audience=audience,
            subjects=[{"kind": "OAuth2Client", "name": "newsvc"}],
            scopes=["read"],
        ),
    )
    owned = _settled(operator, "OAuth2Client", f"{base}-a", "newsvc")
    assert owned["status"] == "True", f"the victim lost its own client id: {owned}"
    credentials = wait_for(
        lambda: secret_data(operator.cluster, f"{base}-a", "newsvc-credentials"), "credentials"
    )
    assert credentials["client-id"] == stolen
    token = _client_token(http, token_server, credentials)["access_token"]
    claims = _verify(token, token_server, audience)
    assert claims["client_id"] == claims["sub"] == stolen

    refused = condition(get(operator.cluster, "OAuth2Client", base, "squat"))
    assert refused["reason"] == "ClientIdOutsideNamespace"
    assert refused["message"] == (
        f"spec.clientId: '{stolen}' is outside this namespace's client ids: it must start with "
        f"'{base}.'"
    )
    assert secret_data(operator.cluster, base, "squat-credentials") is None


def test_a_client_admitted_by_an_older_crd_never_gets_a_service_account_subject(
    operator: RunningOperator,
    token_server: RunningServer,
    tenants: TenantFactory,
    base: str,
    http: httpx.Client,
) -> None:
    """An older CRD admitted `clientId: kubemint:serviceaccount:<victim>:runner`, and the
    attacker granted that client its own audience: on the old code its mounted secret got
    tokens whose `sub` was the victim ServiceAccount's. Now the operator writes it no
    credentials, the token server does not know it, and the victim account works as before."""
    attacker, victim = tenants(base), tenants(f"{base}-a")
    subject = f"kubemint:serviceaccount:{base}-a:runner"
    own = _audience(base)
    squat = custom(
        "OAuth2Client", "squat", base, audiences=[own], scopes=["read"], clientId=subject
    )
    with older_crd(operator.cluster, "OAuth2Client", squat):
        attacker.apply(squat)
    attacker.apply(
        custom(
            "AccessRule",
            "own",
            base,
            audience=own,
            subjects=[{"kind": "OAuth2Client", "name": "squat"}],
            scopes=["read"],
        )
    )
    refused = _settled(operator, "OAuth2Client", base, "squat")
    assert secret_data(operator.cluster, base, "squat-credentials") is None, (
        "the operator wrote credentials for a client posing as a ServiceAccount's subject"
    )
    assert refused["reason"] == "ClientIdOutsideNamespace"
    assert refused["message"].startswith(f"spec.clientId: '{subject}' is outside")
    assert refused["message"].endswith(
        "; the kubemint: prefix is reserved for the subjects of kubemint ServiceAccounts"
    )
    wait_ready(operator.cluster, "AccessRule", base, "own")
    for form in (
        {"grant_type": "client_credentials", "client_id": subject, "client_secret": "kmint_x"},
        {"grant_type": "client_credentials", "client_id": subject},
    ):
        response = http.post(token_server.token_url, data=form)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"

    api = _audience(f"{base}-api")
    victim.apply(
        *_account_setup(f"{base}-a", "runner", api),
        custom(
            "AccessRule",
            "api",
            f"{base}-a",
            audience=api,
            subjects=[{"kind": "ServiceAccount", "name": "runner"}],
            scopes=["event.view"],
        ),
    )
    wait_ready(operator.cluster, "ServiceAccount", f"{base}-a", "runner")
    form = _password_form(operator, f"{base}-a", "runner")
    response = wait_for(
        lambda: (r := http.post(token_server.token_url, data=form)).status_code == 200 and r,
        "the victim account's token",
        timeout=15,
    )
    claims = _verify(response.json()["access_token"], token_server, api)
    assert claims["sub"] == subject
    assert claims["client_id"] == f"{base}-a.gw"


# --- finding 7: account claims and scope -------------------------------------------------------


def test_admission_refuses_claims_that_carry_authority(tenants: TenantFactory, base: str) -> None:
    attacker = tenants(base)
    stderr = _refused(
        attacker,
        custom(
            "ServiceAccount",
            "robot",
            base,
            clients=["gw"],
            appPasswords={"secretName": "robot-pw"},
            claims={"scp": "event.delete", "groups": "admins", "acr": "2", "team": "t"},
        ),
    )
    assert (
        "spec.claims: Forbidden: spec.claims must not set claims that the token server sets or "
        "that carry authorization or identity, found: acr scp groups"
    ) in stderr
    listed = _refused(
        attacker,
        custom("ServiceAccount", "robot", base, clients=["gw"], claims={"roles": ["admin"]}),
    )
    assert "spec.claims.roles" in listed


def test_an_account_cannot_inject_authority_into_another_teams_tokens(
    operator: RunningOperator,
    token_server: RunningServer,
    tenants: TenantFactory,
    base: str,
    http: httpx.Client,
) -> None:
    """The victim's API (`<base>-api`) grants the attacker's account `event.view`. Through an
    older CRD the account adds `scp`, `roles`, `groups` and `acr`, and asks with an empty
    `scope=`: on the old code the token carried them and no `scope`, so Spring Security read
    `scp` as the token's scopes. Now such an account gets no token at all, a spelling the
    CRD admits (`Roles`) neither, and a fixed one gets `scope` (never missing) and only the
    claims the API's owner allows."""
    api_ns = f"{base}-api"
    attacker, api_owner = tenants(base), tenants(api_ns)
    audience = _audience(api_ns)
    callers = custom(
        "AccessRule",
        "callers",
        api_ns,
        audience=audience,
        subjects=[{"kind": "ServiceAccount", "namespace": base, "name": "robot"}],
        scopes=["event.view"],
    )
    api_owner.apply(callers)
    gw, robot = _account_setup(base, "robot", audience, {"team": "tasks"})
    attacker.apply(gw, robot)
    wait_ready(operator.cluster, "ServiceAccount", base, "robot")
    wait_ready(operator.cluster, "AccessRule", api_ns, "callers")
    form = _password_form(operator, base, "robot")  # no scope: all that is granted
    empty = {**form, "scope": ""}  # the attack's: on the old code, a token without `scope`

    def token_claims(form: dict[str, str] = empty) -> dict[str, Any] | None:
        """The claims of the token the account gets now; None when it is refused."""
        response = http.post(token_server.token_url, data=form)
        if response.status_code != 200:
            assert response.status_code == 401, response.text
            assert response.json()["error"] == "invalid_client"
            return None
        claims = _verify(response.json()["access_token"], token_server, audience)
        assert claims["scope"] == response.json()["scope"] == "event.view"
        return claims

    plain = wait_for(lambda: token_claims(form), "a token for the plain account", timeout=15)
    assert plain["sub"] == f"kubemint:serviceaccount:{base}:robot"

    injected = {
        "scp": "event.view event.delete",
        "roles": ["admin"],
        "groups": ["calendar-admins"],
        "acr": "urn:mace:incommon:iap:gold",
        "team": "tasks",
    }
    robot["spec"]["claims"] = injected
    with older_crd(operator.cluster, "ServiceAccount", robot):
        attacker.apply(robot)
    wait_for(lambda: token_claims() is None, "the account with injected claims to be refused")
    assert token_claims(form) is None
    refused = _not_ready(operator, "ServiceAccount", base, "robot")
    assert refused["reason"] == "ForbiddenClaims"
    assert refused["message"].startswith("spec.claims: ")
    assert refused["message"].endswith("): acr, groups, roles, scp")

    # A spelling the current CRD admits: the operator and the token server refuse it too.
    robot["spec"]["claims"] = {"team": "tasks", "Roles": ["admin"]}
    attacker.apply(robot)
    assert _not_ready(operator, "ServiceAccount", base, "robot")["message"].endswith(": Roles")
    assert token_claims() is None

    # Plain claims again: a token, but without them, as the API's rules do not take them.
    robot["spec"]["claims"] = {"team": "tasks", "tier": "batch"}
    attacker.apply(robot)
    wait_ready(operator.cluster, "ServiceAccount", base, "robot")
    fixed = wait_for(token_claims, "a token for the fixed account", timeout=15)
    assert not {"scp", "roles", "Roles", "groups", "acr", "team", "tier"} & set(fixed)

    # The API owner takes the one claim it wants: now it is in its tokens, and only it.
    api_owner.apply({**callers, "spec": {**callers["spec"], "accountClaims": ["team"]}})
    wait_ready(operator.cluster, "AccessRule", api_ns, "callers")
    allowed = wait_for(
        lambda: (c := token_claims()) and "team" in c and c, "the allowed claim in the token"
    )
    assert allowed["team"] == "tasks"
    assert not {"scp", "roles", "Roles", "groups", "acr", "tier"} & set(allowed)


def test_an_account_keeps_its_claims_for_its_own_namespaces_api(
    operator: RunningOperator,
    token_server: RunningServer,
    tenants: TenantFactory,
    base: str,
    http: httpx.Client,
) -> None:
    """The victim side of the rules above: claims an account's own team reads are kept, and
    an audience-only token (the rule grants no scope) says so with an empty `scope`."""
    team = tenants(f"{base}-a")
    namespace = f"{base}-a"
    own = _audience(f"{base}-api")
    team.apply(*_account_setup(namespace, "worker", own, {"team": "tasks", "tier": "batch"}))
    team.apply(
        custom(
            "AccessRule",
            "own",
            namespace,
            audience=own,
            subjects=[{"kind": "ServiceAccount", "name": "worker"}],
        )
    )
    wait_ready(operator.cluster, "ServiceAccount", namespace, "worker")
    wait_ready(operator.cluster, "AccessRule", namespace, "own")
    form = _password_form(operator, namespace, "worker")
    response = wait_for(
        lambda: (r := http.post(token_server.token_url, data=form)).status_code == 200 and r,
        "the worker's token",
        timeout=15,
    )
    claims = _verify(response.json()["access_token"], token_server, own)
    assert claims["team"] == "tasks"
    assert claims["tier"] == "batch"
    assert claims["scope"] == ""
