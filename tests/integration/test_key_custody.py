"""Key custody on the real control plane: a withdrawn key (suspected compromise) leaves JWKS
within seconds and its tokens are refused by the real token server; retired keys keep only
their public part in the SigningKey's Secret, also after converging a Secret written before."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kubemint.api.records import KEYS_FIELD
from kubemint.crypto import keys
from kubemint.crypto.jwks import PRIVATE_MEMBERS
from kubemint.devcluster import ControlPlane
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
from tests.integration.kube_helpers import apply, custom, get, secret_data, wait_for, wait_ready
from tests.integration.tenants import TenantFactory


@pytest.fixture
def http(token_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=token_server.issuer, timeout=10, trust_env=False) as session:
        yield session


def _stored(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    data = secret_data(cluster, namespace, f"{name}-signing-keys") or {}
    document: dict[str, Any] = json.loads(data.get(KEYS_FIELD) or "{}")
    return document


def _events(cluster: ControlPlane, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    selector = urllib.parse.quote(f"involvedObject.name={name},reason={reason}")
    found: list[dict[str, Any]] = cluster.get_json(
        f"/api/v1/namespaces/{namespace}/events?fieldSelector={selector}"
    )["items"]
    return found


def _signing_key(op: RunningOperator, name: str, **spec: Any) -> dict[str, Any]:
    apply(op.cluster, custom("SigningKey", name, op.namespace, algorithm="ES256", **spec))
    return wait_ready(op.cluster, "SigningKey", op.namespace, name)


def test_a_withdrawn_key_leaves_jwks_within_seconds_and_its_tokens_are_refused(
    operator: RunningOperator, token_server: RunningServer, namespace: str, http: httpx.Client
) -> None:
    cluster, ns = operator.cluster, operator.namespace
    status = _signing_key(operator, "leaked")["status"]
    active, staged = status["active"]["kid"], status["next"]["kid"]
    audience, auth = client(operator, http, namespace, "leaked")
    token = issue(http, auth)
    assert kid(token) == active
    assert introspect(http, auth, token)["active"] is True
    assert forward_auth(http, audience, token) == 200  # now in forward-auth's verified cache

    started = time.monotonic()  # kubectl's own start-up (about 0.1 s) is counted
    cluster.kubectl("annotate", "signingkey", "leaked", "-n", ns, f"{WITHDRAW}={active}")
    wait_for(lambda: active not in jwks_kids(http), "the withdrawn kid to leave JWKS", 15)
    elapsed = time.monotonic() - started
    print(f"withdrawn kid absent from /oauth2/jwks after {elapsed:.2f}s")

    # The staged next key sat in the same Secret: it is gone as well, never to sign.
    assert staged not in jwks_kids(http)
    assert introspect(http, auth, token) == {"active": False}
    assert forward_auth(http, audience, token) == 401

    fresh = issue(http, auth)
    assert kid(fresh) not in (active, staged)
    assert kid(fresh) in jwks_kids(http)
    assert introspect(http, auth, fresh)["active"] is True
    assert forward_auth(http, audience, fresh) == 200

    stored = _stored(cluster, ns, "leaked")
    assert not {active, staged} & {k["kid"] for k in stored["keys"]}
    assert {active, staged} <= {w["kid"] for w in stored["withdrawn"]}
    obj = wait_for(
        lambda: (
            (o := get(cluster, "SigningKey", ns, "leaked"))
            and {active, staged} <= {w["kid"] for w in o["status"].get("withdrawn") or []}
            and o
        ),
        "status.withdrawn to record both kids",
    )
    assert obj["status"]["active"]["kid"] == kid(fresh)
    events = wait_for(
        lambda: _events(cluster, ns, "leaked", "KeyWithdrawn"), "a KeyWithdrawn Event", 10
    )
    assert {e["type"] for e in events} == {"Warning"}
    assert any(active in e["message"] for e in events)


def test_a_withdrawn_key_restored_from_an_old_backup_is_withdrawn_again(
    operator: RunningOperator, token_server: RunningServer, http: httpx.Client
) -> None:
    cluster, ns = operator.cluster, operator.namespace
    status = _signing_key(operator, "restored")["status"]
    active = status["active"]["kid"]
    backup = (secret_data(cluster, ns, "restored-signing-keys") or {})[KEYS_FIELD]
    cluster.kubectl("annotate", "signingkey", "restored", "-n", ns, f"{WITHDRAW}={active}")
    wait_for(
        lambda: (
            (o := get(cluster, "SigningKey", ns, "restored"))
            and o["status"]["active"]["kid"] != active
        ),
        "the withdrawal",
    )
    # Restore the backup taken before the withdrawal: its keys.json has no withdrawal record.
    encoded = base64.b64encode(backup.encode()).decode()
    patch = json.dumps({"data": {KEYS_FIELD: encoded}})
    cluster.kubectl("patch", "secret", "restored-signing-keys", "-n", ns, "-p", patch)
    wait_for(
        lambda: active not in {k["kid"] for k in _stored(cluster, ns, "restored")["keys"]},
        "the operator to withdraw the restored key again",
        15,
    )
    wait_for(lambda: active not in jwks_kids(http), "the restored kid to leave JWKS", 15)


def test_an_unknown_kid_is_reported_naming_the_annotation(operator: RunningOperator) -> None:
    cluster, ns = operator.cluster, operator.namespace
    before = _signing_key(operator, "typo")["status"]["active"]["kid"]
    cluster.kubectl("annotate", "signingkey", "typo", "-n", ns, f"{WITHDRAW}=not-a-kid-of-ours")
    obj = wait_ready(cluster, "SigningKey", ns, "typo", status="False", reason="UnknownKid")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert f"metadata.annotations[{WITHDRAW}]" in ready["message"]
    assert "not-a-kid-of-ours" in ready["message"]
    assert obj["status"]["active"]["kid"] == before  # nothing was withdrawn


def test_a_tenant_cannot_withdraw_the_server_s_keys(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    http: httpx.Client,
    tenants: TenantFactory,
) -> None:
    """The attack: take a victim's signing key out (every token it signed refused) from a
    tenant namespace. A tenant cannot annotate the server namespace's SigningKey, and one of
    its own naming the kid is WrongNamespace: nothing is withdrawn."""
    cluster, ns = operator.cluster, operator.namespace
    victim = _signing_key(operator, "victim")["status"]["active"]["kid"]
    _, auth = client(operator, http, namespace, "victim")
    token = issue(http, auth)
    mallory = tenants(f"{namespace}-mallory")
    denied = mallory.kubectl(
        "annotate", "signingkey", "victim", "-n", ns, f"{WITHDRAW}={victim}", check=False
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    fake = custom("SigningKey", "victim", mallory.namespace, algorithm="ES256")
    fake["metadata"]["annotations"] = {WITHDRAW: victim}
    mallory.apply(fake)
    wait_ready(cluster, "SigningKey", mallory.namespace, "victim", "False", "WrongNamespace")
    assert victim in jwks_kids(http)
    assert introspect(http, auth, token)["active"] is True
    assert (get(cluster, "SigningKey", ns, "victim") or {})["status"]["active"]["kid"] == victim


def test_retired_keys_keep_only_their_public_part_in_the_secret(
    operator: RunningOperator, token_server: RunningServer, namespace: str, http: httpx.Client
) -> None:
    cluster, ns = operator.cluster, operator.namespace
    first = _signing_key(operator, "custody")["status"]["active"]["kid"]
    _, auth = client(operator, http, namespace, "custody", tokenFormat="opaque")
    opaque = issue(http, auth)
    assert opaque.startswith("kmint_at_")
    cluster.kubectl("annotate", "signingkey", "custody", "-n", ns, "kubemint.io/rotate=1")
    wait_for(
        lambda: (
            (o := get(cluster, "SigningKey", ns, "custody"))
            and first in {r["kid"] for r in o["status"].get("retired") or []}
        ),
        "the rotation",
    )
    retired = next(k for k in _stored(cluster, ns, "custody")["keys"] if k["kid"] == first)
    assert retired["state"] == "retired"
    assert "privateKey" not in retired
    assert not PRIVATE_MEMBERS & set(retired["publicJwk"])
    for entry in _stored(cluster, ns, "custody")["keys"]:
        assert ("privateKey" in entry) == (entry["state"] != "retired"), entry["kid"]
    # It still verifies: in JWKS, and the opaque token it sealed still introspects.
    wait_for(lambda: first in jwks_kids(http), "the retired kid in JWKS")
    assert introspect(http, auth, opaque)["active"] is True


def test_an_old_secret_with_retired_private_keys_is_converged(
    operator: RunningOperator, token_server: RunningServer, http: httpx.Client
) -> None:
    """The upgrade path: a Secret written by an older operator holds a retired key's private
    key; the operator rewrites it without it and keeps the active and next keys and the
    retired key's public JWK (live tokens need it)."""
    cluster, ns = operator.cluster, operator.namespace
    status = _signing_key(operator, "upgraded")["status"]
    old = keys.generate("ES256")
    document = _stored(cluster, ns, "upgraded")
    remove_after = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    document["keys"].append(
        {
            "kid": old.kid,
            "alg": "ES256",
            "use": "sig",
            "state": "retired",
            "createdAt": "2026-01-01T00:00:00Z",
            "retiredAt": "2026-01-02T00:00:00Z",
            "removeAfter": remove_after,
            "privateKey": old.private_pem,
        }
    )
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    patch = json.dumps({"data": {KEYS_FIELD: encoded}})
    cluster.kubectl("patch", "secret", "upgraded-signing-keys", "-n", ns, "-p", patch)

    def converged() -> dict[str, Any] | None:
        found = next(
            (k for k in _stored(cluster, ns, "upgraded")["keys"] if k["kid"] == old.kid), None
        )
        return found if found is not None and "privateKey" not in found else None

    entry = wait_for(converged, "the retired private key to leave the Secret", 15)
    public = old.public_jwk()
    assert {k: public[k] for k in ("kty", "crv", "x", "y")} == {
        k: entry["publicJwk"][k] for k in ("kty", "crv", "x", "y")
    }
    kept = {k["kid"]: k for k in _stored(cluster, ns, "upgraded")["keys"]}
    assert "privateKey" in kept[status["active"]["kid"]]
    assert "privateKey" in kept[status["next"]["kid"]]
    wait_for(lambda: old.kid in jwks_kids(http), "the retired public key in JWKS")
