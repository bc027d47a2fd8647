"""Attacks on the operator ↔ token-server records, done as tenants with namespace-only rights.

Findings 1 to 3 of issue 9: record names that collide across namespaces, owner keys cut to 63
characters, and a drift watcher that trusted labels on any Secret. Each test is the attack;
it must fail, and the victim must keep working throughout.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kubemint.devcluster import ControlPlane
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import (
    condition,
    custom,
    get,
    secret,
    secret_data,
    wait_for,
    wait_ready,
)
from tests.integration.tenant_requests import credentials as _credentials
from tests.integration.tenant_requests import issued as _issued
from tests.integration.tenant_requests import prefix as _prefix
from tests.integration.tenant_requests import token as _token
from tests.integration.tenants import Tenant, TenantFactory

DRIFT = "kubemint.io/drift-detected"
BAIT_EDIT = '{"data":{"x":"Mg=="}}'


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def _client(name: str, namespace: str, audience: str, **spec: Any) -> dict[str, Any]:
    return custom("OAuth2Client", name, namespace, audiences=[audience], scopes=["read"], **spec)


def _grant(tenant: Tenant, audience: str, *clients: tuple[str, str]) -> None:
    """An AccessRule in the tenant's namespace granting `read` on `audience` to clients."""
    tenant.apply(
        custom(
            "AccessRule",
            "grant",
            tenant.namespace,
            audience=audience,
            subjects=[{"kind": "OAuth2Client", "namespace": ns, "name": n} for ns, n in clients],
            scopes=["read"],
        )
    )


@pytest.mark.parametrize("attacker_first", [False, True], ids=["victim first", "attacker first"])
def test_a_namesake_namespace_cannot_take_a_clients_identity(
    operator: RunningOperator,
    token_server: RunningServer,
    tenants: TenantFactory,
    http: httpx.Client,
    attacker_first: bool,
) -> None:
    """Namespace `p` + client `a-x` and namespace `p-a` + client `x` used to share one
    record (`client-p-a-x`): the attacker's secret then authenticated as the victim's id."""
    cluster, prefix = operator.cluster, _prefix()
    victim, attacker = tenants(prefix), tenants(f"{prefix}-a")
    audience = f"https://{prefix}.test"
    victim_client = _client("a-x", prefix, audience)
    attacker_client = _client("x", f"{prefix}-a", audience)
    for tenant, body in (
        [(attacker, attacker_client), (victim, victim_client)]
        if attacker_first
        else [(victim, victim_client), (attacker, attacker_client)]
    ):
        tenant.apply(body)
        wait_ready(cluster, "OAuth2Client", tenant.namespace, body["metadata"]["name"])
    _grant(victim, audience, (prefix, "a-x"), (f"{prefix}-a", "x"))
    victim_id, victim_secret = _credentials(cluster, prefix, "a-x")
    attacker_id, attacker_secret = _credentials(cluster, f"{prefix}-a", "x")
    assert victim_id != attacker_id
    wait_for(
        lambda: _issued(http, token_server, (victim_id, victim_secret), audience),
        "the victim's token",
    )
    wait_for(
        lambda: _issued(http, token_server, (attacker_id, attacker_secret), audience),
        "the attacker's own token",
    )

    stolen = _token(http, token_server, (victim_id, attacker_secret), audience)
    assert stolen.status_code == 401, stolen.text
    assert stolen.json()["error"] == "invalid_client"
    reverse = _token(http, token_server, (attacker_id, victim_secret), audience)
    assert reverse.status_code == 401, reverse.text
    # The victim keeps working, with its own secret only.
    assert _issued(http, token_server, (victim_id, victim_secret), audience)
    for name, namespace in (("a-x", prefix), ("x", f"{prefix}-a")):
        obj = get(cluster, "OAuth2Client", namespace, name)
        assert condition(obj)["status"] == "True", condition(obj)


def test_a_namesake_namespace_cannot_take_a_service_accounts_identity(
    operator: RunningOperator,
    token_server: RunningServer,
    tenants: TenantFactory,
    http: httpx.Client,
) -> None:
    """The app-password variant: accounts `p/a-x` and `p-a/x` shared `account-p-a-x`, so the
    attacker's own app password gave tokens with `sub: kubemint:serviceaccount:p:a-x`."""
    cluster, prefix = operator.cluster, _prefix()
    victim, attacker = tenants(prefix), tenants(f"{prefix}-a")
    audience = f"https://{prefix}.test"
    for tenant, account in ((victim, "a-x"), (attacker, "x")):
        tenant.apply(
            _client("gw", tenant.namespace, audience, authMethod="none", grantTypes=["password"]),
            custom(
                "ServiceAccount",
                account,
                tenant.namespace,
                clients=["gw"],
                appPasswords={"secretName": f"{account}-password"},
            ),
        )
        wait_ready(cluster, "ServiceAccount", tenant.namespace, account)
    victim.apply(
        custom(
            "AccessRule",
            "grant",
            prefix,
            audience=audience,
            subjects=[{"kind": "ServiceAccount", "namespace": prefix, "name": "a-x"}],
            scopes=["read"],
        )
    )
    passwords = {
        ns: wait_for(lambda ns=ns, n=n: secret_data(cluster, ns, f"{n}-password"), "a password")[
            "password"
        ]
        for ns, n in ((prefix, "a-x"), (f"{prefix}-a", "x"))
    }

    def ask(password: str) -> httpx.Response:
        form = {
            "grant_type": "password",
            "client_id": f"{prefix}.gw",
            "username": "a-x",
            "password": password,
            "audience": audience,
            "scope": "read",
        }
        return http.post(token_server.token_url, data=form)

    wait_for(lambda: ask(passwords[prefix]).status_code == 200, "the victim's token")
    stolen = ask(passwords[f"{prefix}-a"])
    assert stolen.status_code == 401, stolen.text
    assert ask(passwords[prefix]).status_code == 200


def test_clients_sharing_a_63_character_prefix_keep_their_own_secrets(
    operator: RunningOperator,
    token_server: RunningServer,
    tenants: TenantFactory,
    http: httpx.Client,
) -> None:
    """Owner labels were cut to 63 characters and the server looked records up by them."""
    cluster, prefix = operator.cluster, _prefix()
    team = tenants(prefix)
    audience = f"https://{prefix}.test"
    stem = "s" * 63
    first, second = f"{stem}-first", f"{stem}-second"
    for name, short in ((first, "first"), (second, "second")):
        team.apply(_client(name, prefix, audience, secret={"name": f"{short}-credentials"}))
    _grant(team, audience, (prefix, first), (prefix, second))
    for name in (first, second):
        wait_ready(cluster, "OAuth2Client", prefix, name)
    one = _credentials(cluster, prefix, "first")
    two = _credentials(cluster, prefix, "second")
    assert one[0] != two[0]
    assert one[1] != two[1]
    for auth in (one, two):
        wait_for(lambda auth=auth: _issued(http, token_server, auth, audience), "a token")
    for crossed in ((one[0], two[1]), (two[0], one[1])):
        response = _token(http, token_server, crossed, audience)
        assert response.status_code == 401, response.text


def test_a_client_never_overwrites_a_secret_kubemint_did_not_make_for_it(
    operator: RunningOperator,
    token_server: RunningServer,
    tenants: TenantFactory,
    http: httpx.Client,
) -> None:
    """`spec.secret.name` naming a Secret that already exists (the team's own database
    password, or another client's credentials) used to be adopted and overwritten."""
    cluster, prefix = operator.cluster, _prefix()
    team = tenants(prefix)
    audience = f"https://{prefix}.test"
    team.kubectl("create", "secret", "generic", "db", "-n", prefix, "--from-literal=password=p4ss")
    team.apply(_client("owner", prefix, audience, secret={"name": "shared"}))
    wait_ready(cluster, "OAuth2Client", prefix, "owner")
    _grant(team, audience, (prefix, "owner"))
    owner_auth = _credentials_named(cluster, prefix, "shared")
    team.apply(
        _client("db-user", prefix, audience, secret={"name": "db"}),
        _client("copycat", prefix, audience, secret={"name": "shared"}),
    )
    for name, field in (("db-user", "db"), ("copycat", "shared")):
        obj = wait_ready(cluster, "OAuth2Client", prefix, name, status="False")
        assert condition(obj)["reason"] == "SecretConflict"
        assert condition(obj)["message"].startswith("spec.secret.name: Secret ")
        assert field in condition(obj)["message"]
    assert secret_data(cluster, prefix, "db") == {"password": "p4ss"}  # never lost
    assert _credentials_named(cluster, prefix, "shared") == owner_auth
    wait_for(lambda: _issued(http, token_server, owner_auth, audience), "the owner's token")
    # The copycat never got a record: nothing authenticates as it.
    copycat = get(cluster, "OAuth2Client", prefix, "copycat")
    assert copycat is not None
    record = f"kubemint-client-{copycat['metadata']['uid']}"
    assert secret(cluster, operator.namespace, record) is None


def _credentials_named(cluster: ControlPlane, namespace: str, secret_name: str) -> tuple[str, str]:
    data = wait_for(lambda: secret_data(cluster, namespace, secret_name), secret_name)
    return data["client-id"], data["client-secret"]


def test_labels_on_a_tenants_secret_cannot_steer_the_operator(
    operator: RunningOperator, tenants: TenantFactory
) -> None:
    """A tenant labels its own Secret as kubemint's, naming the server's SigningKey and another
    namespace's client: the operator used to annotate (and reconcile) them on every edit."""
    cluster, prefix = operator.cluster, _prefix()
    victim, attacker = tenants(prefix), tenants(f"{prefix}-evil")
    victim.apply(_client("api", prefix, f"https://{prefix}.test"))
    wait_ready(cluster, "OAuth2Client", prefix, "api")
    targets = [
        ("SigningKey", operator.namespace, "default"),
        ("OAuth2Client", prefix, "api"),
    ]
    for index, (kind, namespace, name) in enumerate(targets):
        attacker.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": f"bait-{index}",
                    "namespace": attacker.namespace,
                    "labels": {
                        "app.kubernetes.io/managed-by": "kubemint",
                        "kubemint.io/role": "client-credentials",
                        "kubemint.io/owner-kind": kind,
                        "kubemint.io/owner-namespace": namespace,
                        "kubemint.io/owner-name": name,
                    },
                },
                "stringData": {"x": "1"},
            }
        )
        attacker.kubectl(
            "patch",
            "secret",
            f"bait-{index}",
            "-n",
            attacker.namespace,
            "-p",
            '{"data":{"x":"Mg=="}}',
        )
    # A control the operator must act on, after the bait in the same watch stream: the
    # attacker edits its own client's Secret, so its own client is asked to reconcile.
    attacker.apply(_client("own", attacker.namespace, f"https://{prefix}-evil.test"))
    wait_ready(cluster, "OAuth2Client", attacker.namespace, "own")
    attacker.kubectl(
        "patch",
        "secret",
        "own-credentials",
        "-n",
        attacker.namespace,
        "-p",
        json.dumps({"data": {"client-secret": base64.b64encode(b"edited").decode()}}),
    )
    wait_for(
        lambda: DRIFT in _annotations(cluster, "OAuth2Client", attacker.namespace, "own"),
        "the operator to repair the attacker's own client",
    )
    for kind, namespace, name in targets:
        assert DRIFT not in _annotations(cluster, kind, namespace, name), (kind, namespace)
    # The victim's client is untouched and still Ready.
    assert condition(get(cluster, "OAuth2Client", prefix, "api"))["status"] == "True"


def _annotations(cluster: ControlPlane, kind: str, namespace: str, name: str) -> dict[str, str]:
    obj = get(cluster, kind, namespace, name) or {}
    return dict(obj.get("metadata", {}).get("annotations") or {})


def test_a_tenant_cannot_read_or_write_the_records(
    operator: RunningOperator, tenants: TenantFactory
) -> None:
    """The premise of every record: tenants have no rights in the server namespace."""
    team = tenants(_prefix())
    for verb in ("get", "list", "create", "update", "delete"):
        assert not team.can(verb, "secrets", operator.namespace)
    denied = team.kubectl("get", "secrets", "-n", operator.namespace, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
