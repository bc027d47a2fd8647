"""The operator on a real API server: OAuth2Client Secrets, rotation, drift, deletion, checks."""

from __future__ import annotations

import hashlib
import json
import time

from kubemint.api.records import legacy_record_name
from kubemint.devcluster import ControlPlane
from tests.integration.conftest import RunningOperator
from tests.integration.kube_helpers import (
    apply,
    condition,
    custom,
    get,
    record,
    record_name_of,
    secret,
    secret_data,
    wait_for,
    wait_ready,
)


def _client(name: str, namespace: str, **spec: object) -> dict[str, object]:
    return custom(
        "OAuth2Client",
        name,
        namespace,
        **{"audiences": ["https://api.test"], "scopes": ["read"], **spec},
    )


def _digests(cluster: ControlPlane, op: RunningOperator, namespace: str, name: str) -> list[str]:
    rec = record(cluster, op.namespace, "OAuth2Client", namespace, name) or {}
    return [g["sha256"] for g in rec.get("secrets", [])]


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_a_client_gets_a_mountable_secret_and_a_verification_record(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(cluster, _client("billing", namespace))
    obj = wait_ready(cluster, "OAuth2Client", namespace, "billing")

    data = secret_data(cluster, namespace, "billing-credentials")
    assert data is not None
    assert set(data) == {"client-id", "client-secret", "token-url", "issuer", "auth-method"}
    assert data["auth-method"] == "client_secret_basic"
    assert data["client-id"] == f"{namespace}.billing" == obj["status"]["clientId"]
    assert data["client-secret"].startswith("kmint_")
    assert len(data["client-secret"]) == len("kmint_") + 43  # 256 bits, base64url
    assert data["issuer"] == operator.issuer
    assert data["token-url"] == operator.issuer + "/oauth2/token"

    rec = record(cluster, operator.namespace, "OAuth2Client", namespace, "billing")
    assert rec is not None
    assert rec["clientId"] == f"{namespace}.billing"
    assert [g["sha256"] for g in rec["secrets"]] == [_sha(data["client-secret"])]
    assert data["client-secret"] not in json.dumps(rec)  # digests only

    owner = secret(cluster, namespace, "billing-credentials")
    assert owner is not None
    refs = owner["metadata"]["ownerReferences"]
    assert [(r["kind"], r["name"]) for r in refs] == [("OAuth2Client", "billing")]
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]


def test_a_private_key_jwt_client_has_no_secret_and_its_public_keys_are_published(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "kid": "k1",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    }
    apply(cluster, _client("signer", namespace, authMethod="private_key_jwt", jwks={"keys": [jwk]}))
    wait_ready(cluster, "OAuth2Client", namespace, "signer")
    data = secret_data(cluster, namespace, "signer-credentials")
    assert data is not None
    assert "client-secret" not in data
    rec = record(cluster, operator.namespace, "OAuth2Client", namespace, "signer")
    assert rec is not None
    assert rec["secrets"] == []
    assert rec["jwks"]["keys"][0]["x"] == jwk["x"]


def test_a_client_secret_rotates_and_the_previous_one_keeps_working_for_the_overlap(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(cluster, _client("rotor", namespace, secret={"rotateEvery": "4s", "overlap": "3s"}))
    wait_ready(cluster, "OAuth2Client", namespace, "rotor")
    first = (secret_data(cluster, namespace, "rotor-credentials") or {})["client-secret"]

    def rotated() -> str | None:
        value = (secret_data(cluster, namespace, "rotor-credentials") or {}).get("client-secret")
        return value if value and value != first else None

    second = wait_for(rotated, "the client secret to rotate", timeout=20)
    # During the overlap both verify (current first)...
    wait_for(
        lambda: _digests(cluster, operator, namespace, "rotor") == [_sha(second), _sha(first)],
        "both digests during the overlap",
        timeout=3,
    )
    # ...and the first stops working once the overlap has passed.
    wait_for(
        lambda: _digests(cluster, operator, namespace, "rotor")[-1:] != [_sha(first)],
        "the previous secret to expire",
        timeout=20,
    )
    obj = get(cluster, "OAuth2Client", namespace, "rotor")
    assert obj is not None
    assert obj["status"]["nextSecretRotationAt"] > obj["status"]["secretRotatedAt"]


def test_a_hand_deleted_secret_is_recreated_and_the_lost_value_overlaps(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(cluster, _client("fragile", namespace, secret={"overlap": "1h"}))
    wait_ready(cluster, "OAuth2Client", namespace, "fragile")
    old = (secret_data(cluster, namespace, "fragile-credentials") or {})["client-secret"]

    cluster.kubectl("delete", "secret", "fragile-credentials", "-n", namespace)
    new = wait_for(
        lambda: (secret_data(cluster, namespace, "fragile-credentials") or {}).get("client-secret"),
        "the deleted Secret to come back",
    )
    assert new != old  # the plaintext exists nowhere else, so a new one is issued...
    assert _digests(cluster, operator, namespace, "fragile") == [_sha(new), _sha(old)]
    events = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "involvedObject.name=fragile",
        "-o",
        "jsonpath={.items[*].reason}",
    ).stdout
    assert "SecretRegenerated" in events


def test_a_hand_edited_secret_key_is_restored(operator: RunningOperator, namespace: str) -> None:
    cluster = operator.cluster
    apply(cluster, _client("edited", namespace))
    wait_ready(cluster, "OAuth2Client", namespace, "edited")
    before = secret_data(cluster, namespace, "edited-credentials")
    assert before is not None
    cluster.kubectl(
        "patch",
        "secret",
        "edited-credentials",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        json.dumps({"stringData": {"token-url": "https://evil.example/token"}}),
    )
    restored = wait_for(
        lambda: (
            (d := secret_data(cluster, namespace, "edited-credentials"))
            and d["token-url"] == before["token-url"]
            and d
        ),
        "token-url to be restored",
    )
    assert restored["client-id"] == before["client-id"]


def test_a_deleted_verification_record_is_rebuilt_from_the_mounted_secret(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(cluster, _client("records", namespace))
    wait_ready(cluster, "OAuth2Client", namespace, "records")
    mounted = (secret_data(cluster, namespace, "records-credentials") or {})["client-secret"]
    cluster.kubectl(
        "delete",
        "secret",
        record_name_of(cluster, "OAuth2Client", namespace, "records"),
        "-n",
        operator.namespace,
    )
    digests = wait_for(
        lambda: _digests(cluster, operator, namespace, "records"), "the record to come back"
    )
    assert digests == [_sha(mounted)]  # same secret: workloads are not disturbed
    assert (secret_data(cluster, namespace, "records-credentials") or {})["client-secret"] == (
        mounted
    )


def test_deleting_a_client_removes_both_of_its_secrets(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(cluster, _client("ephemeral", namespace))
    wait_ready(cluster, "OAuth2Client", namespace, "ephemeral")
    ephemeral = record_name_of(cluster, "OAuth2Client", namespace, "ephemeral")
    assert secret(cluster, operator.namespace, ephemeral) is not None
    cluster.kubectl("delete", "oauth2client", "ephemeral", "-n", namespace)
    wait_for(
        lambda: secret(cluster, operator.namespace, ephemeral) is None,
        "the verification record to be deleted",
    )
    wait_for(
        lambda: secret(cluster, namespace, "ephemeral-credentials") is None,
        "the credentials Secret to be garbage-collected",
        timeout=60,
    )


def test_a_missing_signing_key_is_reported_naming_the_field(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(cluster, _client("orphan", namespace, signingKey="nope"))
    obj = wait_ready(cluster, "OAuth2Client", namespace, "orphan", status="False")
    ready = condition(obj)
    assert ready["reason"] == "SigningKeyNotFound"
    assert "spec.signingKey" in ready["message"]
    assert f"{operator.namespace}/nope" in ready["message"]
    # Once the key exists the client converges by itself (re-checked while not Ready).
    apply(cluster, custom("SigningKey", "nope", operator.namespace, algorithm="ES384"))
    wait_ready(cluster, "OAuth2Client", namespace, "orphan")


def test_a_client_id_already_taken_is_refused_for_the_newer_client(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(cluster, _client("first", namespace, clientId=f"shared-{namespace}"))
    wait_ready(cluster, "OAuth2Client", namespace, "first")
    time.sleep(1.1)  # creationTimestamps have seconds: same-second claims are contested
    apply(cluster, _client("second", namespace, clientId=f"shared-{namespace}"))
    obj = wait_ready(cluster, "OAuth2Client", namespace, "second", status="False")
    assert condition(obj)["reason"] == "ClientIdConflict"
    message = condition(obj)["message"]
    assert (
        message == f"spec.clientId: 'shared-{namespace}' is already used by an older OAuth2Client"
    )
    assert "first" not in message  # another tenant's client name is not revealed
    assert (
        secret(
            cluster,
            operator.namespace,
            record_name_of(cluster, "OAuth2Client", namespace, "second"),
        )
        is None
    )


def test_a_jwks_secret_holding_a_private_key_is_refused_without_echoing_it(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    private = {
        "kty": "EC",
        "crv": "P-256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        "d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI",
    }
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "leaky-keys",
        "-n",
        namespace,
        "--from-literal",
        "jwks.json=" + json.dumps({"keys": [private]}),
    )
    apply(
        cluster,
        _client(
            "leaky", namespace, authMethod="private_key_jwt", jwksSecretRef={"name": "leaky-keys"}
        ),
    )
    obj = wait_ready(cluster, "OAuth2Client", namespace, "leaky", status="False")
    assert condition(obj)["reason"] == "InvalidJWKS"
    assert "private key material" in condition(obj)["message"]
    assert private["d"] not in json.dumps(obj)
    rec = record(cluster, operator.namespace, "OAuth2Client", namespace, "leaky")
    assert rec is not None
    assert rec["jwks"] is None


def test_reconciling_again_changes_nothing(operator: RunningOperator, namespace: str) -> None:
    cluster = operator.cluster
    apply(cluster, _client("steady", namespace))
    wait_ready(cluster, "OAuth2Client", namespace, "steady")
    steady_record = record_name_of(cluster, "OAuth2Client", namespace, "steady")
    time.sleep(1)

    def versions() -> tuple[str, ...]:
        objects = [
            secret(cluster, namespace, "steady-credentials"),
            secret(cluster, operator.namespace, steady_record),
            get(cluster, "OAuth2Client", namespace, "steady"),
        ]
        return tuple(o["metadata"]["resourceVersion"] for o in objects if o)

    before = versions()
    cluster.kubectl(  # a no-op spec change makes the handlers run again
        "annotate", "oauth2client", "steady", "-n", namespace, "example.com/touch=1"
    )
    time.sleep(3)  # several re-check intervals
    after = versions()
    assert after[:2] == before[:2], "the Secrets were rewritten without a change"


def test_a_record_left_under_the_old_name_by_an_upgrade_is_removed(
    cluster: ControlPlane, operator: RunningOperator, namespace: str
) -> None:
    """Records were named `client-<namespace>-<name>` before they were named after uids; the
    operator removes its client's old one, and never a namesake's (another uid)."""
    apply(cluster, _client("legacy", namespace))
    obj = wait_ready(cluster, "OAuth2Client", namespace, "legacy")
    uid = obj["metadata"]["uid"]
    old = legacy_record_name("OAuth2Client", namespace, "legacy")
    namesake = legacy_record_name("OAuth2Client", namespace, "other")
    for name, owner_uid in ((old, uid), (namesake, "not-this-one")):
        document = json.dumps({"uid": owner_uid, "secrets": []})
        cluster.kubectl(
            "create",
            "secret",
            "generic",
            name,
            "-n",
            operator.namespace,
            f"--from-literal=client.json={document}",
        )
    # The new record goes missing (as right after an upgrade): the operator writes it again
    # and, finding none under its new name, removes the old one.
    current = record_name_of(cluster, "OAuth2Client", namespace, "legacy")
    cluster.kubectl("delete", "secret", current, "-n", operator.namespace)
    wait_for(lambda: secret(cluster, operator.namespace, current), "the record to come back")
    wait_for(lambda: secret(cluster, operator.namespace, old) is None, "the old record to go")
    assert secret(cluster, operator.namespace, namesake) is not None
