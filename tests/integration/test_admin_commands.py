"""The admin commands against the real control plane and token server, as a read-only admin.

`can-i` is asked every question of a table that is also sent, with the client's real
credentials, to the real token endpoint: same answer (issued scopes, or error code), same
description, same audit reason. `inspect` reads real issued tokens (and one revoked through
the real revocation endpoint); `status` lists a deliberately broken object. The admin is a
real user holding only the documented read-only RBAC (examples/admin/rbac.yaml, no Secrets);
a tenant with rights in its own namespace only sees only that namespace, or a clear error.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kubemint.admin import commands
from kubemint.devcluster import ControlPlane
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import apply, custom, secret_data, wait_for, wait_ready
from tests.integration.tenants import TenantFactory

RBAC = Path(__file__).resolve().parents[2] / "examples" / "admin" / "rbac.yaml"
BIN = Path(sys.executable).parent


@dataclass
class World:
    app: str  # the clients' namespace
    api: str  # owns the audience
    evil: str  # claims it too
    audience: str
    other: str  # an audience the client may request, no rule grants
    creds: dict[str, tuple[str, str]]  # client name → (id, secret)
    passwords: dict[str, str]  # account name → app password
    kubeconfig: Path  # the read-only admin's
    server_namespace: str


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def world(operator: RunningOperator, token_server: RunningServer) -> Iterator[World]:
    cluster = operator.cluster
    tag = uuid.uuid4().hex[:6]
    app, api, evil = f"adm{tag}-app", f"adm{tag}-api", f"adm{tag}-evil"
    for ns in (app, api, evil):
        cluster.kubectl("create", "namespace", ns)
    audience, other = f"https://{api}.test", f"https://{api}-other.test"

    def client(name: str, scopes: list[str], **spec: Any) -> dict[str, Any]:
        return custom("OAuth2Client", name, app, **{"audiences": [audience], **spec}, scopes=scopes)

    def subject(kind: str, name: str) -> dict[str, str]:
        return {"kind": kind, "namespace": app, "name": name}

    apply(
        cluster,
        client("reader", ["read", "write", "admin"], audiences=[audience, other]),
        client("stranger", ["read"]),
        client("off", ["read"], disabled=True),
        client("cond", ["read", "write"]),
        custom(
            "ServiceAccount",
            "robot",
            app,
            clients=["reader"],
            appPasswords={"secretName": "robot-password"},
        ),
        custom(
            "ServiceAccount",
            "idle",
            app,
            clients=["reader"],
            appPasswords={"secretName": "idle-password"},
        ),
        custom(
            "AccessRule",
            "readers",
            api,
            audience=audience,
            subjects=[subject("OAuth2Client", "reader"), subject("ServiceAccount", "robot")],
            scopes=["read", "write"],
        ),
        custom(
            "AccessRule",
            "conditional",
            api,
            audience=audience,
            subjects=[subject("OAuth2Client", "cond")],
            scopes=["read", "write"],
            when='"write" in request.scopes',
        ),
    )
    wait_ready(cluster, "AccessRule", api, "readers")
    # A rule in another namespace claiming the owned audience: not Ready, grants nothing.
    apply(
        cluster,
        custom(
            "AccessRule",
            "grab",
            evil,
            audience=audience,
            subjects=[subject("OAuth2Client", "stranger")],
            scopes=["read"],
        ),
    )
    creds = {}
    for name in ("reader", "stranger", "off", "cond"):
        data = wait_for(
            lambda name=name: secret_data(cluster, app, f"{name}-credentials"), f"{name}'s Secret"
        )
        creds[name] = (data["client-id"], data["client-secret"])
    passwords = {
        name: wait_for(
            lambda name=name: secret_data(cluster, app, f"{name}-password"), f"{name}'s password"
        )["password"]
        for name in ("robot", "idle")
    }
    kubeconfig = _read_only_admin(cluster, operator.namespace)
    try:
        yield World(
            app, api, evil, audience, other, creds, passwords, kubeconfig, operator.namespace
        )
    finally:
        for ns in (app, api, evil):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _read_only_admin(cluster: ControlPlane, server_namespace: str) -> Path:
    """A user in the group the documented RBAC binds (the example, with the test's server
    namespace), and no other right."""
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    for doc in docs:
        if doc["metadata"].get("namespace"):
            doc["metadata"]["namespace"] = server_namespace
    cluster.kubectl("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in docs))
    user = f"admin-{uuid.uuid4().hex[:6]}"
    return cluster.user_kubeconfig(user, groups=["kubemint-admins"])


def admin(world: World, *args: str, kubeconfig: Path | None = None) -> tuple[int, str, str]:
    """Run an admin command in this process (the same main `kubectl kubemint` runs)."""
    argv = [*args, "--server-namespace", world.server_namespace]
    argv += ["--kubeconfig", str(kubeconfig or world.kubeconfig)]
    out, err = _Capture(), _Capture()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    try:
        code = commands.main(argv)
    finally:
        sys.stdout, sys.stderr = saved
    return code, out.text, err.text


class _Capture:
    def __init__(self) -> None:
        self.text = ""

    def write(self, data: str) -> int:
        self.text += data
        return len(data)

    def flush(self) -> None:
        return None


def _basic(creds: tuple[str, str]) -> dict[str, str]:
    return {
        "Authorization": "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
    }


def _audits(server: RunningServer) -> list[dict[str, Any]]:
    """The token audit records: one JSON object per line (kubemint.logs.AuditFormatter)."""
    records = []
    for line in server.log().splitlines():
        if line.startswith('{"time"') and '"audit": "token"' in line:
            records.append(json.loads(line))
    return records


# The table: (row, client, account, audience ("": the client's only one, "other", "nowhere":
# not the client's), scope (None: not sent), grant type, expected: issued scopes or error code).
CC = "client_credentials"
TABLE = [
    ("a granted scope", "reader", None, "", "read", CC, "read"),
    ("no scope: all allowed", "reader", None, "", None, CC, "read write"),
    ("a scope no rule grants", "reader", None, "", "admin", CC, "invalid_scope"),
    ("an audience no rule grants", "reader", None, "other", "read", CC, "access_denied"),
    ("an audience not the client's", "reader", None, "nowhere", "read", CC, "invalid_target"),
    ("only another namespace's rule", "stranger", None, "", "read", CC, "access_denied"),
    ("a disabled client", "off", None, "", "read", CC, "unauthorized_client"),
    ("a condition that is false", "cond", None, "", "read", CC, "access_denied"),
    ("a condition that holds", "cond", None, "", "read write", CC, "read write"),
    (
        "a grant type the client lacks",
        "reader",
        None,
        "",
        "read",
        "password",
        "unauthorized_client",
    ),
    ("an account a rule names", "reader", "robot", "", "read", CC, "read"),
    ("an account no rule names", "reader", "idle", "", "read", CC, "access_denied"),
]


def test_can_i_agrees_with_the_token_endpoint_on_every_row(
    world: World, token_server: RunningServer, http: httpx.Client
) -> None:
    for row, client, account, aud, scope, grant_type, expected in TABLE:
        audience = {"": world.audience, "other": world.other}.get(aud, "https://nowhere.test")
        form = {"grant_type": grant_type, "audience": audience}
        if scope is not None:
            form["scope"] = scope
        if account:
            form |= {"username": account, "password": world.passwords[account]}
        is_error = "_" in expected

        # The server follows the API by watch: wait until it answers as the table says.
        def settled(
            form: dict[str, str] = form,
            client: str = client,
            wanted: str = expected if is_error else "issued",
        ) -> tuple[httpx.Response, int] | None:
            seen = len(_audits(token_server))
            response = http.post(
                token_server.token_url, data=form, headers=_basic(world.creds[client])
            )
            got = response.json().get("error") if response.status_code != 200 else "issued"
            return (response, seen) if got == wanted else None

        response, seen = wait_for(settled, f"the endpoint's answer for {row!r}", timeout=20)
        audit = wait_for(
            lambda seen=seen: (a := _audits(token_server))[seen:] and a[seen], "its audit line"
        )
        assert audit["client_id"] == world.creds[client][0], audit
        argv = ["can-i", "-o", "json", "--grant-type", grant_type, "--audience", audience]
        argv += (
            ["--service-account", f"{world.app}/{account}", "--via", client]
            if account
            else ["--client", f"{world.app}/{client}"]
        )
        if scope is not None:
            argv += ["--scope", scope]
        code, out, err = admin(world, *argv)
        dry = json.loads(out) if out else {"stderr": err}
        body = response.json()
        if response.status_code == 200:
            assert (code, dry["allowed"]) == (0, True), (row, dry)
            assert " ".join(dry["scopes"]) == body["scope"] == expected, (row, dry, body)
        else:
            assert (code, dry["allowed"]) == (1, False), (row, dry)
            assert dry["error"] == body["error"] == expected, (row, dry, body)
            assert dry["description"] == body.get("error_description", ""), (row, dry, body)
            assert dry["reason"] == audit["reason"], (row, dry, audit)
        if row == "only another namespace's rule":
            grab = next(r for r in dry["rules"] if r["rule"] == f"{world.evil}/grab")
            assert grab["outcome"] == "grants nothing"
            assert "AudienceConflict" in grab["detail"], grab
        if row == "a condition that is false":
            assert [(r["rule"], r["outcome"]) for r in dry["rules"]] == [
                (f"{world.api}/conditional", "condition false"),
                (f"{world.api}/readers", "subject not listed"),
                (f"{world.evil}/grab", "grants nothing"),
            ], dry["rules"]


def test_can_i_evaluates_the_condition_on_the_request_described(world: World) -> None:
    base = ["can-i", "--client", f"{world.app}/cond", "--audience", world.audience]
    code, out, _ = admin(world, *base, "--scope", "read")
    assert code == 1
    assert "rule " + world.api + "/conditional: condition false" in out
    assert 'when: "write" in request.scopes' in out
    code, out, _ = admin(world, *base, "--scope", "read write")
    assert code == 0
    assert out.startswith("yes: ")


def _issue(world: World, server: RunningServer, http: httpx.Client, **form: str) -> str:
    response = wait_for(
        lambda: (
            (
                r := http.post(
                    server.token_url,
                    data={"grant_type": "client_credentials", "audience": world.audience, **form},
                    headers=_basic(world.creds["reader"]),
                )
            ).status_code
            == 200
            and r
        ),
        "a token",
    )
    return str(response.json()["access_token"])


def test_inspect_shows_where_a_token_came_from_and_that_revoking_it_shows(
    world: World, token_server: RunningServer, http: httpx.Client
) -> None:
    token = _issue(world, token_server, http, scope="read")
    code, out, err = admin(world, "inspect", token, "-o", "json")
    found = json.loads(out)
    assert code == 0, (found, err)
    assert found["verified"]
    assert found["active"]
    assert found["revoked"] is False
    assert found["issuer"] == token_server.issuer  # from the client's status
    assert found["client"] == f"{world.app}/reader"
    assert found["key"] == "SigningKey default (active)"
    assert found["rules"] == [f"{world.api}/readers: read"]
    assert found["standing"] == "yes"

    revoked = http.post(
        token_server.issuer + "/oauth2/revoke",
        data={"token": token},
        headers=_basic(world.creds["reader"]),
    )
    assert revoked.status_code == 200, revoked.text
    code, out, _ = admin(world, "inspect", token)
    assert code == 1
    assert out.startswith("NOT active")
    assert "revoked: yes" in out

    robot = _issue(
        world, token_server, http, scope="read", username="robot", password=world.passwords["robot"]
    )
    code, out, _ = admin(world, "inspect", robot, "-o", "json")
    assert code == 0
    assert json.loads(out)["account"] == f"{world.app}/robot"

    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "scope": "admin"}).encode())
    code, out, _ = admin(
        world, "inspect", f"{header}.{forged.decode().rstrip('=')}.{signature}", "-o", "json"
    )
    assert code == 1
    assert json.loads(out)["verified"] is False


def test_status_lists_the_broken_object_and_the_keys_with_why(
    world: World, token_server: RunningServer
) -> None:
    code, out, err = admin(world, "status", "-o", "json", "--issuer", token_server.issuer)
    found = json.loads(out)
    assert code == 1, err
    broken = [p for p in found["problems"] if p["object"] == f"{world.evil}/grab"]
    assert [(p["kind"], p["reason"]) for p in broken] == [("AccessRule", "AudienceConflict")]
    assert not [p for p in found["problems"] if p["object"].startswith(world.api)]
    states = {k["state"]: k for k in found["keys"] if k["signing_key"] == "default"}
    assert {"active", "next"} <= states.keys()
    assert states["active"]["served"]
    assert states["next"]["served"]
    assert "pre-published" in states["next"]["why"]
    assert found["unexplained"] == []
    assert found["unreadable"] == []
    code, out, _ = admin(world, "status", "-n", world.api)
    assert (code, out.splitlines()[0]) == (0, "every kubemint object is Ready")


def test_a_tenant_sees_only_its_namespace_or_a_clear_error(
    world: World, tenants: TenantFactory
) -> None:
    tenant = tenants(world.app)
    code, out, err = admin(
        world, "status", "-n", world.app, "-o", "json", kubeconfig=tenant.kubeconfig
    )
    assert code == 0, err
    found = json.loads(out)
    assert all(p["object"].startswith(world.app + "/") for p in found["problems"])
    assert found["keys"] == []
    assert any("signingkeys" in u for u in found["unreadable"])
    code, out, err = admin(world, "status", kubeconfig=tenant.kubeconfig)
    assert code == 2
    assert "may not list oauth2clients.kubemint.io in all namespaces" in err
    assert "Traceback" not in err
    code, out, err = admin(
        world, "can-i", "--client", f"{world.app}/reader", kubeconfig=tenant.kubeconfig
    )
    assert code == 2
    assert "may not list" in err
    assert "kubemint-admin-view" in err


def test_the_read_only_admin_reads_no_secret_and_kubectl_runs_the_plugin(
    world: World, operator: RunningOperator
) -> None:
    cluster = operator.cluster
    kubectl = [str(cluster.binaries.kubectl), f"--kubeconfig={world.kubeconfig}"]
    can = subprocess.run(
        [*kubectl, "auth", "can-i", "get", "secrets", "-n", world.server_namespace],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert can.stdout.strip() == "no"
    # kubectl finds the plugin on PATH and passes no flags: the kubeconfig comes from KUBECONFIG.
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "KUBECONFIG": str(world.kubeconfig)}
    result = subprocess.run(
        [str(cluster.binaries.kubectl), "kubemint", "can-i", "--client", f"{world.app}/reader",
         "--scope", "read", "--audience", world.audience,
         "--server-namespace", world.server_namespace],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("yes: ")
