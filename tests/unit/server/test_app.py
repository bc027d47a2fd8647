"""The token endpoint in-process, on a hand-built snapshot: client assertions and their attacks."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jws
from starlette.testclient import TestClient

from kubemint.api.records import Generation, StoredKey
from kubemint.config import ServerSettings
from kubemint.crypto import keys, secrets
from kubemint.server.app import create_app
from kubemint.store.assertion_jtis import ClaimBudget
from kubemint.store.view import StaticView
from tests.unit.records import account_record, build, client_record, keys_secret

ISSUER = "https://kubemint.test"
TOKEN_URL = ISSUER + "/oauth2/token"
AUDIENCE = "https://calendar.test"
NOW = datetime.datetime.now(datetime.UTC)
CLIENT_KEY = keys.generate("ES256")
HMAC_SECRET = secrets.generate_secret()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _client(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "tasks",
            "name": name,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"audiences": [AUDIENCE], "scopes": ["event.view"], **spec},
    }


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    signing = StoredKey(keys.generate("ES256"), "active", NOW, activated_at=NOW)
    generation = Generation(secrets.digest(HMAC_SECRET), NOW, hmac_key=HMAC_SECRET)
    snapshot = build(
        server_namespace="kubemint-system",
        clients=[
            _client(
                "signer", authMethod="private_key_jwt", jwks={"keys": [CLIENT_KEY.public_jwk()]}
            ),
            _client("hmac", authMethod="client_secret_jwt"),
        ],
        accounts=[],
        rules=[
            {
                "metadata": {
                    "namespace": "calendar",
                    "name": "r",
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                },
                "spec": {
                    "audience": AUDIENCE,
                    "scopes": ["event.view"],
                    "subjects": [
                        {"kind": "OAuth2Client", "namespace": "tasks", "name": "signer"},
                        {"kind": "OAuth2Client", "namespace": "tasks", "name": "hmac"},
                    ],
                },
            }
        ],
        signing_keys=[
            {"metadata": {"namespace": "kubemint-system", "name": "default"}, "spec": {}}
        ],
        secrets=[
            keys_secret("default", [signing]),
            client_record("tasks", "signer", jwks={"keys": [CLIENT_KEY.public_jwk()]}),
            client_record("tasks", "hmac", secrets=[generation]),
        ],
    )
    # Many deliberate failures against one client: lift the per-client limit for this module.
    settings = ServerSettings(
        namespace="kubemint-system", issuer=ISSUER, failures_per_client=10_000
    )
    with TestClient(create_app(settings, StaticView(snapshot))) as test_client:
        yield test_client


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "tasks.signer",
        "sub": "tasks.signer",
        "aud": TOKEN_URL,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(claims: dict[str, Any]) -> str:
    key = keys.jose_key(CLIENT_KEY.private_pem)
    header = {"alg": "ES256", "kid": CLIENT_KEY.kid}
    return jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=["ES256"])


def _request(client: TestClient, assertion: str, client_id: str = "tasks.signer") -> Any:
    return client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )


def test_a_valid_private_key_jwt_assertion_gets_a_token(client: TestClient) -> None:
    response = _request(client, _signed(_claims()))
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert pyjwt.decode(token, options={"verify_signature": False})["sub"] == "tasks.signer"


def _alg_none() -> str:
    header = _b64(json.dumps({"alg": "none", "kid": CLIENT_KEY.kid}).encode())
    return f"{header}.{_b64(json.dumps(_claims()).encode())}."


def _hs256_with_public_key() -> str:
    """The classic confusion: HMAC-sign with the bytes of the client's public key."""
    public = serialization.load_pem_private_key(CLIENT_KEY.private_pem.encode(), None)
    pem = public.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "kid": CLIENT_KEY.kid}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def _tampered() -> str:
    header, _, signature = _signed(_claims()).split(".")
    forged = _b64(json.dumps(_claims(sub="tasks.other")).encode())
    return f"{header}.{forged}.{signature}"


ATTACKS = {
    "alg none": _alg_none,
    "HS256 signed with the public key": _hs256_with_public_key,
    "an expired assertion": lambda: _signed(_claims(exp=int(time.time()) - 120)),
    "an assertion issued in the future": lambda: _signed(_claims(iat=int(time.time()) + 600)),
    "an assertion not valid yet": lambda: _signed(_claims(nbf=int(time.time()) + 600)),
    "an assertion without exp": lambda: _signed(_claims(exp=None)),
    "an assertion for another audience": lambda: _signed(_claims(aud="https://evil.test")),
    "an assertion whose sub is another client": lambda: _signed(_claims(sub="tasks.other")),
    "a tampered payload": _tampered,
    "a lifetime far too long": lambda: _signed(_claims(exp=int(time.time()) + 86400)),
    "garbage": lambda: "not-a-jwt",
}


@pytest.mark.parametrize("attack", list(ATTACKS), ids=list(ATTACKS))
def test_a_bad_client_assertion_is_refused_as_invalid_client(
    client: TestClient, attack: str
) -> None:
    assertion = ATTACKS[attack]()
    response = _request(client, assertion)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert assertion not in response.text


def test_a_replayed_assertion_is_refused(client: TestClient) -> None:
    assertion = _signed(_claims())
    assert _request(client, assertion).status_code == 200
    replay = _request(client, assertion)
    assert (replay.status_code, replay.json()["error"]) == (401, "invalid_client")


def test_the_issuer_is_an_accepted_assertion_audience(client: TestClient) -> None:
    assert _request(client, _signed(_claims(aud=ISSUER))).status_code == 200


def _hmac_assertion(secret: str, **overrides: Any) -> str:
    claims = _claims(**{"iss": "tasks.hmac", "sub": "tasks.hmac", **overrides})
    return pyjwt.encode(claims, secret, algorithm="HS256")


def test_client_secret_jwt_verifies_with_the_shared_secret_only(client: TestClient) -> None:
    ok = _request(client, _hmac_assertion(HMAC_SECRET), client_id="tasks.hmac")
    assert ok.status_code == 200, ok.text
    wrong = _request(client, _hmac_assertion(secrets.generate_secret()), client_id="tasks.hmac")
    assert wrong.status_code == 401


def test_a_client_cannot_use_a_method_it_is_not_registered_for(client: TestClient) -> None:
    # An HMAC assertion for the private_key_jwt client, even if well formed, is refused.
    assertion = _hmac_assertion(HMAC_SECRET, iss="tasks.signer", sub="tasks.signer")
    assert _request(client, assertion).status_code == 401


def test_unexpected_failures_answer_server_error_without_a_trace(client: TestClient) -> None:
    response = client.post(
        "/oauth2/token",
        content=b"grant_type=client_credentials",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "Basic " + "A" * 10,
        },
    )
    assert response.status_code == 401
    assert "Traceback" not in response.text


CI_KEY = keys.generate("RS256")
CI_ISSUER = "https://ci.example"


@pytest.fixture(scope="module")
def federated() -> Iterator[TestClient]:
    """A `none` client whose account accepts JWTs from an external CI issuer."""
    signing = StoredKey(keys.generate("ES256"), "active", NOW, activated_at=NOW)
    account = {
        "metadata": {"namespace": "tasks", "name": "ci"},
        "spec": {
            "clients": ["gateway"],
            "federation": {
                "issuers": [
                    {
                        "issuer": CI_ISSUER,
                        "jwksSecretRef": {"name": "ci-keys"},
                        "subject": "repo:org/app",
                        "when": "claims.ref == 'refs/heads/main'",
                    }
                ]
            },
        },
    }
    snapshot = build(
        server_namespace="kubemint-system",
        clients=[
            _client(
                "gateway",
                authMethod="none",
                grantTypes=["urn:ietf:params:oauth:grant-type:jwt-bearer"],
            )
        ],
        accounts=[account],
        rules=[
            {
                "metadata": {
                    "namespace": "calendar",
                    "name": "r",
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                },
                "spec": {
                    "audience": AUDIENCE,
                    "scopes": ["event.view"],
                    "subjects": [{"kind": "ServiceAccount", "namespace": "tasks", "name": "ci"}],
                },
            }
        ],
        signing_keys=[
            {"metadata": {"namespace": "kubemint-system", "name": "default"}, "spec": {}}
        ],
        secrets=[
            keys_secret("default", [signing]),
            account_record("tasks", "ci", issuer_keys={CI_ISSUER: {"keys": [CI_KEY.public_jwk()]}}),
        ],
    )
    settings = ServerSettings(namespace="kubemint-system", issuer=ISSUER)
    with TestClient(create_app(settings, StaticView(snapshot))) as test_client:
        yield test_client


def _ci_token(**overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": CI_ISSUER,
        "sub": "repo:org/app",
        "aud": ISSUER,
        "iat": now,
        "exp": now + 300,
        "ref": "refs/heads/main",
    }
    claims.update(overrides)
    key = keys.jose_key(CI_KEY.private_pem)
    return jws.serialize_compact(
        {"alg": "RS256", "kid": CI_KEY.kid}, json.dumps(claims).encode(), key, algorithms=["RS256"]
    )


def _bearer(client: TestClient, assertion: str) -> Any:
    return client.post(
        "/oauth2/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "client_id": "tasks.gateway",
            "assertion": assertion,
        },
    )


def test_an_external_issuers_jwt_gets_a_token_for_the_federated_account(
    federated: TestClient,
) -> None:
    response = _bearer(federated, _ci_token())
    assert response.status_code == 200, response.text
    claims = pyjwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "kubemint:serviceaccount:tasks:ci"
    assert claims["scope"] == "event.view"


REFUSED = {
    "another subject": {"sub": "repo:org/other"},
    "a when condition that does not hold": {"ref": "refs/heads/feature"},
    "an expired JWT": {"exp": int(time.time()) - 120},
    "another audience": {"aud": "https://elsewhere.test"},
    "an unknown issuer": {"iss": "https://evil.example"},
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_external_jwts_that_do_not_fit_are_an_invalid_grant(
    federated: TestClient, case: str
) -> None:
    response = _bearer(federated, _ci_token(**REFUSED[case]))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


# --- interop: what standard client libraries send (issue 13) ---------------------------------


def _without_client_id(client: TestClient, assertion: str, **extra: str) -> Any:
    """authlib's PrivateKeyJWT / ClientSecretJWT: no client_id next to the assertion."""
    return client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            **extra,
        },
    )


def test_an_assertion_without_client_id_names_its_client_by_its_subject(
    client: TestClient,
) -> None:
    signed = _without_client_id(client, _signed(_claims()))
    assert signed.status_code == 200, signed.text
    assert (
        pyjwt.decode(signed.json()["access_token"], options={"verify_signature": False})[
            "client_id"
        ]
        == "tasks.signer"
    )
    hmac_signed = _without_client_id(client, _hmac_assertion(HMAC_SECRET))
    assert hmac_signed.status_code == 200, hmac_signed.text


def test_an_assertion_without_client_id_is_still_single_use(client: TestClient) -> None:
    assertion = _signed(_claims())
    assert _without_client_id(client, assertion).status_code == 200
    assert _without_client_id(client, assertion).json()["error"] == "invalid_client"
    # Nor does naming the client make the replay new.
    assert _request(client, assertion).json()["error"] == "invalid_client"


BAD_WITHOUT_CLIENT_ID = {
    # iss != sub: a federated assertion must name its client; it never picks one by `sub`.
    "iss is not sub": lambda: _signed(_claims(iss="https://idp.example.com")),
    "no sub": lambda: _signed(_claims(sub=None)),
    "sub names another client, signed by this one": lambda: _signed(
        _claims(iss="tasks.hmac", sub="tasks.hmac")
    ),
    "garbage": lambda: "not-a-jwt",
}


@pytest.mark.parametrize("case", list(BAD_WITHOUT_CLIENT_ID), ids=list(BAD_WITHOUT_CLIENT_ID))
def test_an_assertion_without_client_id_that_does_not_prove_its_subject_is_refused(
    client: TestClient, case: str
) -> None:
    response = _without_client_id(client, BAD_WITHOUT_CLIENT_ID[case]())
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def test_a_client_id_next_to_an_assertion_must_be_its_subject(client: TestClient) -> None:
    # The signer's own valid assertion, sent as if from the HMAC client.
    response = _request(client, _signed(_claims()), client_id="tasks.hmac")
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def test_authlibs_one_hour_assertion_is_accepted_and_longer_ones_are_not(
    client: TestClient,
) -> None:
    now = int(time.time())
    hour = _without_client_id(client, _signed(_claims(iat=now, exp=now + 3600)))
    assert hour.status_code == 200, hour.text
    longer = _without_client_id(client, _signed(_claims(iat=now, exp=now + 3600 + 60)))
    assert (longer.status_code, longer.json()["error"]) == (401, "invalid_client")


def test_the_accepted_assertion_lifetime_is_configurable() -> None:
    settings = ServerSettings.from_env(
        {
            "KUBEMINT_NAMESPACE": "kubemint-system",
            "KUBEMINT_ISSUER": ISSUER,
            "KUBEMINT_ASSERTION_MAX_LIFETIME": "600",
        }
    )
    assert settings.assertion_max_lifetime == 600
    with pytest.raises(ValueError, match="KUBEMINT_ASSERTION_MAX_LIFETIME"):
        ServerSettings.from_env(
            {
                "KUBEMINT_NAMESPACE": "n",
                "KUBEMINT_ISSUER": ISSUER,
                "KUBEMINT_ASSERTION_MAX_LIFETIME": "90000",
            }
        )
    with pytest.raises(ValueError, match="KUBEMINT_ASSERTION_REPLAY"):
        ServerSettings.from_env(
            {"KUBEMINT_NAMESPACE": "n", "KUBEMINT_ISSUER": ISSUER, "KUBEMINT_ASSERTION_REPLAY": "x"}
        )


class _SharedStore:
    """A SharedClaims in memory, as the API server's create-if-absent behaves."""

    def __init__(self, budget: ClaimBudget | None = None) -> None:
        self.claimed: dict[tuple[str, str], float] = {}
        self.tenants: list[str] = []
        self.down = False
        self.spent = False
        self.budget = budget

    def claim(self, tenant: str, issuer_or_client: str, jti: str, expires: float) -> bool:
        from kubemint.store.assertion_jtis import OverBudget, Unavailable

        if self.down:
            raise Unavailable("down")
        if self.spent:
            raise OverBudget(7)
        if self.budget is not None:
            self.budget.spend(tenant, issuer_or_client)
        self.tenants.append(tenant)
        if (issuer_or_client, jti) in self.claimed:
            return False
        self.claimed[(issuer_or_client, jti)] = expires
        return True


def test_with_a_shared_store_an_assertion_used_on_one_replica_is_refused_on_another() -> None:
    shared = _SharedStore()
    replicas = [_replica(shared) for _ in range(2)]
    with replicas[0] as first, replicas[1] as second:
        assertion = _signed(_claims())
        assert _without_client_id(first, assertion).status_code == 200
        replay = _without_client_id(second, assertion)
        assert (replay.status_code, replay.json()["error"]) == (401, "invalid_client")
        # Each replica still gets fresh assertions.
        assert _without_client_id(second, _signed(_claims())).status_code == 200


def test_when_the_shared_store_cannot_answer_the_assertion_waits_and_is_not_burnt() -> None:
    shared = _SharedStore()
    with _replica(shared) as replica:
        assertion = _signed(_claims())
        shared.down = True
        refused = _without_client_id(replica, assertion)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "temporarily_unavailable"
        assert refused.headers["retry-after"] == "1"
        shared.down = False  # the retry of the same assertion is not taken for a replay
        assert _without_client_id(replica, assertion).status_code == 200


def test_a_client_over_its_shared_claims_per_minute_waits_and_its_assertion_is_not_burnt() -> None:
    shared = _SharedStore()
    with _replica(shared) as replica:
        assertion = _signed(_claims())
        shared.spent = True
        refused = _without_client_id(replica, assertion)
        assert (refused.status_code, refused.json()["error"]) == (429, "slow_down")
        assert refused.headers["retry-after"] == "7"
        shared.spent = False
        assert _without_client_id(replica, assertion).status_code == 200


def test_a_namespace_over_its_shared_claims_per_minute_waits_and_the_metric_says_which_budget() -> (
    None
):
    """The claim names the client's namespace; the namespace's budget (here 2 a minute, the
    client's 10) refuses the third with its own description, not burnt, and is counted."""
    shared = _SharedStore(ClaimBudget(10, 2))
    with _replica(shared) as replica:
        for _ in range(2):
            assert _without_client_id(replica, _signed(_claims())).status_code == 200
        refused = _without_client_id(replica, _signed(_claims()))
        assert (refused.status_code, refused.json()) == (
            429,
            {
                "error": "slow_down",
                "error_description": (
                    "too many client assertions from this client's namespace; retry later"
                ),
            },
        )
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        registry = replica.app.state.metrics.registry  # type: ignore[attr-defined]
        counted = registry.get_sample_value(
            "kubemint_assertion_claims_refused_total", {"budget": "namespace"}
        )
    assert counted == 1
    assert shared.tenants == ["tasks", "tasks"]  # the client's namespace, on every claim


_REPLICA_SNAPSHOT: list[Any] = []


def _replica(shared: _SharedStore, failures_per_client: int = 10) -> TestClient:
    """Another token server on the same objects (as the module fixture), sharing `shared`."""
    if not _REPLICA_SNAPSHOT:
        signing = StoredKey(keys.generate("ES256"), "active", NOW, activated_at=NOW)
        _REPLICA_SNAPSHOT.append(
            build(
                server_namespace="kubemint-system",
                clients=[
                    _client(
                        "signer",
                        authMethod="private_key_jwt",
                        jwks={"keys": [CLIENT_KEY.public_jwk()]},
                    )
                ],
                accounts=[],
                rules=[
                    {
                        "metadata": {
                            "namespace": "calendar",
                            "name": "r",
                            "creationTimestamp": "2026-01-01T00:00:00Z",
                        },
                        "spec": {
                            "audience": AUDIENCE,
                            "scopes": ["event.view"],
                            "subjects": [
                                {"kind": "OAuth2Client", "namespace": "tasks", "name": "signer"}
                            ],
                        },
                    }
                ],
                signing_keys=[
                    {"metadata": {"namespace": "kubemint-system", "name": "default"}, "spec": {}}
                ],
                secrets=[
                    keys_secret("default", [signing]),
                    client_record("tasks", "signer", jwks={"keys": [CLIENT_KEY.public_jwk()]}),
                ],
            )
        )
    settings = ServerSettings(
        namespace="kubemint-system", issuer=ISSUER, failures_per_client=failures_per_client
    )
    return TestClient(create_app(settings, StaticView(_REPLICA_SNAPSHOT[0]), jtis=shared))


def test_failures_without_client_id_count_against_the_asserted_client() -> None:
    """The per-client failure limit must hold for assertion-only requests: else an attacker
    guessing a client_secret_jwt key would meet only the per-source limit."""
    with _replica(_SharedStore(), failures_per_client=3) as replica:
        answers = [
            _without_client_id(replica, _signed(_claims(exp=int(time.time()) - 120))).status_code
            for _ in range(5)
        ]
        # As for secrets (oauth.ratelimit), strangers' failures never refuse the real client.
        valid = _without_client_id(replica, _signed(_claims()))
    assert answers == [401, 401, 401, 429, 429], answers
    assert valid.status_code == 200, valid.text
