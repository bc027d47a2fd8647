"""The operator on a real API server: SigningKeys, ServiceAccounts, AccessRules, no leaks."""

from __future__ import annotations

import json
import time

from tests.integration.conftest import RunningOperator
from tests.integration.kube_helpers import (
    apply,
    condition,
    custom,
    get,
    record_name_of,
    secret,
    secret_data,
    wait_for,
    wait_ready,
)


def _keys(op: RunningOperator, name: str) -> list[dict[str, str]]:
    data = secret_data(op.cluster, op.namespace, f"{name}-signing-keys") or {}
    keys: list[dict[str, str]] = json.loads(data.get("keys.json", '{"keys": []}'))["keys"]
    return keys


def _states(op: RunningOperator, name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in _keys(op, name):
        out.setdefault(key["state"], []).append(key["kid"])
    return out


def test_a_signing_key_stores_an_active_and_a_staged_next_key(operator: RunningOperator) -> None:
    cluster, ns = operator.cluster, operator.namespace
    apply(cluster, custom("SigningKey", "rsa", ns, algorithm="RS256", keySize=3072))
    obj = wait_ready(cluster, "SigningKey", ns, "rsa")
    states = _states(operator, "rsa")
    assert obj["status"]["active"]["kid"] == states["active"][0]
    assert obj["status"]["next"]["kid"] == states["next"][0]
    assert obj["status"]["secretName"] == "rsa-signing-keys"
    assert all(k["privateKey"].startswith("-----BEGIN PRIVATE KEY") for k in _keys(operator, "rsa"))
    assert "PRIVATE" not in json.dumps(obj["status"])


def test_a_signing_key_rotates_on_schedule_and_retires_old_keys(
    operator: RunningOperator,
) -> None:
    cluster, ns = operator.cluster, operator.namespace
    rotation = {"every": "3s", "prePublish": "1s", "retainAfter": "2s"}
    apply(cluster, custom("SigningKey", "fast", ns, algorithm="ES256", rotation=rotation))
    wait_ready(cluster, "SigningKey", ns, "fast")
    first = _states(operator, "fast")

    promoted = wait_for(
        lambda: (s := _states(operator, "fast"))["active"] == first["next"] and s,
        "the staged key to be promoted",
        timeout=15,
    )
    assert promoted["retired"] == first["active"]  # still published for verifiers...
    wait_for(  # ...until retainAfter has passed
        lambda: first["active"][0] not in json.dumps(_keys(operator, "fast")),
        "the retired key to be removed",
        timeout=15,
    )
    events = cluster.kubectl(
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        "involvedObject.name=fast",
        "-o",
        "jsonpath={.items[*].reason}",
    ).stdout
    assert {"KeyGenerated", "KeyRotated", "KeyRetired", "KeyRemoved"} <= set(events.split())


def test_an_annotation_requests_an_immediate_rotation(operator: RunningOperator) -> None:
    cluster, ns = operator.cluster, operator.namespace
    apply(cluster, custom("SigningKey", "manual", ns, algorithm="EdDSA"))
    wait_ready(cluster, "SigningKey", ns, "manual")
    before = _states(operator, "manual")
    cluster.kubectl(
        "annotate", "signingkey", "manual", "-n", ns, "kubemint.io/rotate=compromised-1"
    )
    after = wait_for(
        lambda: (s := _states(operator, "manual"))["active"] == before["next"] and s,
        "the manual rotation",
    )
    assert after["retired"] == before["active"]
    obj = wait_for(
        lambda: (
            (o := get(cluster, "SigningKey", ns, "manual"))
            and o["status"].get("lastManualRotation") == "compromised-1"
            and o
        ),
        "status to record the request",
    )
    assert obj["status"]["active"]["kid"] == before["next"][0]


def test_retain_after_shorter_than_a_token_lifetime_is_reported(
    operator: RunningOperator, namespace: str
) -> None:
    cluster, ns = operator.cluster, operator.namespace
    apply(
        cluster,
        custom("SigningKey", "short", ns, rotation={"retainAfter": "5m", "prePublish": "1m"}),
    )
    wait_ready(cluster, "SigningKey", ns, "short")
    apply(
        cluster,
        custom(
            "OAuth2Client",
            "long-lived",
            namespace,
            audiences=["https://api.test"],
            signingKey="short",
            tokenLifetime="1h",
        ),
    )
    obj = wait_ready(cluster, "SigningKey", ns, "short", status="False")
    assert condition(obj)["reason"] == "RetainAfterTooShort"
    assert f"{namespace}/long-lived" in condition(obj)["message"]
    assert "spec.rotation.retainAfter" in condition(obj)["message"]


def test_an_encryption_key_without_use_is_inferred_from_its_algorithm(
    operator: RunningOperator, namespace: str
) -> None:
    cluster, ns = operator.cluster, operator.namespace
    apply(cluster, custom("SigningKey", "sealing", ns, algorithm="RSA-OAEP-256"))
    obj = wait_ready(cluster, "SigningKey", ns, "sealing")
    assert "use" not in obj["spec"]
    assert obj["status"]["active"]["use"] == "enc"
    assert {(k["alg"], k["use"]) for k in _keys(operator, "sealing")} == {("RSA-OAEP-256", "enc")}
    # The OAuth2Client check sees it as an encryption key (and the default key as a signing one).
    apply(
        cluster,
        custom(
            "OAuth2Client",
            "sealed",
            namespace,
            audiences=["https://api.test"],
            encryptionKey="sealing",
        ),
    )
    client = wait_ready(cluster, "OAuth2Client", namespace, "sealed")
    assert condition(client)["reason"] == "Reconciled"
    apply(
        cluster,
        custom(
            "OAuth2Client",
            "misused",
            namespace,
            audiences=["https://api.test"],
            signingKey="sealing",
        ),
    )
    misused = wait_ready(cluster, "OAuth2Client", namespace, "misused", status="False")
    assert condition(misused)["reason"] == "SigningKeyWrongUse"


def test_a_derived_client_id_conflict_names_metadata_name_and_not_the_holder(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(
        cluster,
        custom(
            "OAuth2Client",
            "holder",
            namespace,
            audiences=["https://api.test"],
            clientId=f"{namespace}.derived",
        ),
    )
    wait_ready(cluster, "OAuth2Client", namespace, "holder")
    time.sleep(1.1)  # creationTimestamps have seconds: same-second claims are contested
    apply(cluster, custom("OAuth2Client", "derived", namespace, audiences=["https://api.test"]))
    obj = wait_ready(cluster, "OAuth2Client", namespace, "derived", status="False")
    message = condition(obj)["message"]
    assert condition(obj)["reason"] == "ClientIdConflict"
    assert message.startswith(f"metadata.name: the client id '{namespace}.derived'")
    assert "already used by an older OAuth2Client" in message
    assert "holder" not in message


def test_a_service_account_with_a_broken_issuer_condition_is_not_ready(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    issuer = {"issuer": "https://ci.test", "jwksUri": "https://ci.test/jwks"}
    apply(
        cluster,
        custom("OAuth2Client", "ci-gateway", namespace, audiences=["https://api.test"]),
        custom(
            "ServiceAccount",
            "ci",
            namespace,
            clients=["ci-gateway"],
            federation={"issuers": [{**issuer, "when": "claims.ref == "}]},
        ),
    )
    obj = wait_ready(
        cluster, "ServiceAccount", namespace, "ci", status="False", reason="InvalidExpression"
    )
    assert condition(obj)["reason"] == "InvalidExpression"
    assert condition(obj)["message"].startswith("spec.federation.issuers[0].when: ")
    fixed = {**issuer, "when": "claims.ref == 'refs/heads/main' && request.client_id != ''"}
    apply(
        cluster,
        custom(
            "ServiceAccount",
            "ci",
            namespace,
            clients=["ci-gateway"],
            federation={"issuers": [fixed]},
        ),
    )
    wait_ready(cluster, "ServiceAccount", namespace, "ci")


def test_a_service_account_gets_app_passwords_and_a_subject(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(
        cluster,
        custom(
            "OAuth2Client",
            "gateway",
            namespace,
            audiences=["https://api.test"],
            authMethod="none",
            grantTypes=["password", "client_credentials"],
        ),
        custom(
            "ServiceAccount",
            "robot",
            namespace,
            clients=["gateway"],
            appPasswords={"secretName": "robot-password"},
        ),
    )
    obj = wait_ready(cluster, "ServiceAccount", namespace, "robot")
    assert obj["status"]["subject"] == f"kubemint:serviceaccount:{namespace}:robot"
    data = secret_data(cluster, namespace, "robot-password")
    assert data is not None
    assert data["username"] == "robot"
    assert data["password"].startswith("kmint_")
    record = secret_data(
        cluster,
        operator.namespace,
        record_name_of(cluster, "ServiceAccount", namespace, "robot"),
    )
    assert record is not None
    assert data["password"] not in record["account.json"]


def test_a_service_account_naming_a_missing_client_is_not_ready(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(
        cluster,
        custom(
            "ServiceAccount",
            "lost",
            namespace,
            clients=["ghost"],
            appPasswords={"secretName": "lost-password"},
        ),
    )
    obj = wait_ready(cluster, "ServiceAccount", namespace, "lost", status="False")
    assert condition(obj)["reason"] == "ClientNotFound"
    assert f"spec.clients: OAuth2Client {namespace}/ghost" in condition(obj)["message"]


def test_federation_waits_for_the_kubernetes_service_account(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(
        cluster,
        custom(
            "OAuth2Client", "pods", namespace, audiences=["https://api.test"], authMethod="none"
        ),
        custom(
            "ServiceAccount",
            "worker",
            namespace,
            clients=["pods"],
            federation={"kubernetes": [{"serviceAccountName": "worker"}]},
        ),
    )
    obj = wait_ready(
        cluster,
        "ServiceAccount",
        namespace,
        "worker",
        status="False",
        reason="KubernetesServiceAccountNotFound",
    )
    assert condition(obj)["reason"] == "KubernetesServiceAccountNotFound"
    assert "spec.federation.kubernetes[0].serviceAccountName" in condition(obj)["message"]
    cluster.kubectl("create", "serviceaccount", "worker", "-n", namespace)
    wait_ready(cluster, "ServiceAccount", namespace, "worker")


def test_an_app_password_grant_needs_a_client_that_allows_it(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(
        cluster,
        custom(
            "OAuth2Client",
            "exchanger",
            namespace,
            audiences=["https://api.test"],
            grantTypes=["urn:ietf:params:oauth:grant-type:token-exchange"],
        ),
        custom(
            "ServiceAccount",
            "mismatch",
            namespace,
            clients=["exchanger"],
            appPasswords={"secretName": "mismatch-password"},
        ),
    )
    obj = wait_ready(
        cluster, "ServiceAccount", namespace, "mismatch", status="False", reason="GrantMismatch"
    )
    assert condition(obj)["reason"] == "GrantMismatch"
    assert "spec.appPasswords" in condition(obj)["message"]


def test_the_first_namespace_to_claim_an_audience_owns_it(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    audience = f"https://{namespace}.owned.test"
    subject = {"kind": "OAuth2Client", "namespace": namespace, "name": "anyone"}
    apply(
        cluster,
        custom(
            "AccessRule", "owner", namespace, audience=audience, subjects=[subject], scopes=["read"]
        ),
    )
    owner = wait_ready(cluster, "AccessRule", namespace, "owner")
    assert owner["status"]["audienceOwner"] == namespace

    intruder_ns = f"{namespace}-x"
    cluster.kubectl("create", "namespace", intruder_ns)
    time.sleep(1.1)  # creation times have 1 s precision; same-second claims tie (unit-tested)
    try:
        apply(
            cluster,
            custom(
                "AccessRule",
                "grab",
                intruder_ns,
                audience=audience,
                subjects=[subject],
                scopes=["admin"],
            ),
        )
        grab = wait_ready(cluster, "AccessRule", intruder_ns, "grab", status="False")
        assert condition(grab)["reason"] == "AudienceConflict"
        assert "owned by another namespace" in condition(grab)["message"]
        assert "audienceOwner" not in grab["status"]
        # The owner rule is unaffected.
        assert condition(get(cluster, "AccessRule", namespace, "owner"))["status"] == "True"
    finally:
        cluster.kubectl("delete", "namespace", intruder_ns, "--wait=false")


def test_a_rule_with_a_broken_condition_is_not_ready(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(
        cluster,
        custom(
            "AccessRule",
            "broken",
            namespace,
            audience="https://b.test",
            subjects=[{"kind": "OAuth2Client", "name": "x"}],
            when="claims.iss == ",
        ),
    )
    obj = wait_ready(cluster, "AccessRule", namespace, "broken", status="False")
    assert condition(obj)["reason"] == "InvalidExpression"
    assert condition(obj)["message"].startswith("spec.when:")

    apply(
        cluster,
        custom(
            "AccessRule",
            "typo",
            namespace,
            audience="https://t.test",
            subjects=[{"kind": "OAuth2Client", "name": "x"}],
            when="claim.iss == 'a'",
        ),
    )
    obj = wait_ready(cluster, "AccessRule", namespace, "typo", status="False")
    assert "unknown variable claim" in condition(obj)["message"]


def test_missing_subjects_are_reported_without_failing_the_rule(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(
        cluster,
        custom(
            "AccessRule",
            "early",
            namespace,
            audience=f"https://{namespace}.e",
            subjects=[{"kind": "ServiceAccount", "name": "later"}],
            scopes=["read"],
        ),
    )
    obj = wait_ready(cluster, "AccessRule", namespace, "early")
    assert obj["status"]["unresolvedSubjects"] == [f"ServiceAccount/{namespace}/later"]
    assert condition(obj, "SubjectsResolved")["status"] == "False"
    apply(cluster, custom("ServiceAccount", "later", namespace, clients=["none-yet"]))
    wait_for(
        lambda: (
            condition(get(cluster, "AccessRule", namespace, "early"), "SubjectsResolved").get(
                "status"
            )
            == "True"
        ),
        "the subject to resolve",
    )


def test_no_secret_value_reaches_status_events_or_the_operator_log(
    operator: RunningOperator, namespace: str
) -> None:
    cluster = operator.cluster
    apply(
        cluster,
        custom(
            "OAuth2Client",
            "audited",
            namespace,
            audiences=["https://api.test"],
            authMethod="client_secret_jwt",
            secret={"rotateEvery": "2s", "overlap": "1s"},
        ),
        custom(
            "ServiceAccount",
            "audited",
            namespace,
            clients=["audited"],
            appPasswords={"secretName": "audited-password", "rotateEvery": "2s", "overlap": "1s"},
        ),
    )
    wait_ready(cluster, "OAuth2Client", namespace, "audited")
    seen: set[str] = set()

    def collect() -> bool:
        for name, key in (
            ("audited-credentials", "client-secret"),
            ("audited-password", "password"),
        ):
            value = (secret_data(cluster, namespace, name) or {}).get(key)
            if value:
                seen.add(value)
        return len(seen) >= 5  # several rotations of each

    wait_for(collect, "a few secret rotations", timeout=20)
    for key in _keys(operator, "default"):
        if "privateKey" in key:
            seen.add(key["privateKey"].splitlines()[1])  # a line of base64 key material
        if "opaqueKey" in key:  # a retired key's: it opens the opaque tokens it sealed
            seen.add(key["opaqueKey"])

    statuses = json.dumps(
        [
            cluster.get_json(f"/apis/kubemint.io/v1alpha1/{plural}")
            for plural in ("oauth2clients", "serviceaccounts", "signingkeys", "accessrules")
        ]
    )
    events = cluster.kubectl("get", "events", "-A", "-o", "json").stdout
    log = operator.log()
    for value in seen:
        for where, text in (("status", statuses), ("events", events), ("operator log", log)):
            assert value not in text, f"a secret value appears in {where}"
    assert secret(cluster, namespace, "audited-credentials") is not None
