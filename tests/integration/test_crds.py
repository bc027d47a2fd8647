"""The kubemint CRDs as a real kube-apiserver serves them.

Checks that every example manifest is accepted, that admission rejects invalid objects with a
message naming the offending field (OpenAPI validation and every CEL rule), that the kinds show
up under `kubectl get kubemint`, that `kubectl explain` prints the field descriptions, and that
the printer columns are there.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemint.devcluster import ControlPlane

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "examples"
CRD_DIR = REPO_ROOT / "crds"
API_VERSION = "kubemint.io/v1alpha1"

Manifest = dict[str, Any]


class _Remove:
    """Marker for `edited`: delete the field instead of setting it."""

    def __repr__(self) -> str:
        return "REMOVE"


REMOVE = _Remove()


def edited(base: Manifest, changes: Mapping[str, Any]) -> Manifest:
    """A deep copy of `base` with each dotted path ("spec.jwks.keys.0.d") set or removed."""
    result = copy.deepcopy(base)
    for path, value in changes.items():
        *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
        node: Any = result
        for part in parents:
            if isinstance(part, str) and part not in node:
                node[part] = {}
            node = node[part]
        if value is REMOVE:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)
    return result


def manifest(kind: str, name: str, spec: Manifest) -> Manifest:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


EC_PUBLIC_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "kid": "k1",
    "x": "2I0CpWJeiZOEiIVqRWEMa0gUZRRijSRmS9sCAmapTTY",
    "y": "cWssENYzq3svMfb9PbmCDt109TnG3YQB-Ab1XL1RulY",
}

SIGNING_KEY = manifest(
    "SigningKey",
    "key",
    {"algorithm": "ES256", "rotation": {"every": "720h", "prePublish": "24h"}},
)
CLIENT = manifest(
    "OAuth2Client",
    "client",
    {"scopes": ["event.view"], "audiences": ["https://calendar.example.com"]},
)
KEY_CLIENT = manifest(
    "OAuth2Client",
    "key-client",
    {
        "authMethod": "private_key_jwt",
        "audiences": ["https://calendar.example.com"],
        "jwks": {"keys": [EC_PUBLIC_JWK]},
    },
)
SERVICE_ACCOUNT = manifest(
    "ServiceAccount",
    "robot",
    {
        "clients": ["client"],
        "appPasswords": {"secretName": "robot-password", "rotateEvery": "168h"},
        "federation": {
            "kubernetes": [{"serviceAccountName": "robot"}],
            "issuers": [
                {"issuer": "https://ci.example.com", "jwksUri": "https://ci.example.com/jwks"}
            ],
            "trustedIssuers": [{"name": "github-actions", "subject": "repo:example/tasks"}],
        },
        "claims": {"team": "tasks"},
    },
)
ACCESS_RULE = manifest(
    "AccessRule",
    "rule",
    {
        "audience": "https://calendar.example.com",
        "subjects": [{"kind": "OAuth2Client", "name": "client"}],
        "scopes": ["event.view"],
        "accountClaims": ["team"],
        "http": [{"hosts": ["calendar.example.com"], "paths": ["/api"], "methods": ["GET"]}],
    },
)
TRUSTED_ISSUER = manifest(
    "TrustedIssuer",
    "github-actions",
    {
        "issuer": "https://token.actions.githubusercontent.com",
        "jwksUri": "https://token.actions.githubusercontent.com/.well-known/jwks",
    },
)
INLINE_TRUSTED_ISSUER = manifest(
    "TrustedIssuer",
    "pinned",
    {"issuer": "https://ci.example.com", "jwks": {"keys": [EC_PUBLIC_JWK]}},
)
VALID_BASES = (
    SIGNING_KEY,
    CLIENT,
    KEY_CLIENT,
    SERVICE_ACCOUNT,
    ACCESS_RULE,
    TRUSTED_ISSUER,
    INLINE_TRUSTED_ISSUER,
)


@dataclass(frozen=True)
class Invalid:
    """An object admission must refuse, and the text of the error that names the field."""

    name: str
    manifest: Manifest
    error: str


INVALID: tuple[Invalid, ...] = (
    # SigningKey
    Invalid(
        "a signing key with an unknown algorithm is rejected",
        edited(SIGNING_KEY, {"spec.algorithm": "HS256"}),
        'spec.algorithm: Unsupported value: "HS256"',
    ),
    Invalid(
        "an RSA-OAEP-256 key with use sig is rejected",
        edited(SIGNING_KEY, {"spec.algorithm": "RSA-OAEP-256", "spec.use": "sig"}),
        'spec.use must be "enc" when spec.algorithm is RSA-OAEP-256',
    ),
    Invalid(
        "use enc without an algorithm is rejected (the algorithm defaults to ES256)",
        manifest("SigningKey", "enc-only", {"use": "enc"}),
        'spec.use must be "sig" when spec.algorithm is ES256',
    ),
    Invalid(
        "an ES256 key with use enc is rejected",
        edited(SIGNING_KEY, {"spec.use": "enc"}),
        'spec.use must be "sig" when spec.algorithm is ES256',
    ),
    Invalid(
        "a key size on an EC key is rejected",
        edited(SIGNING_KEY, {"spec.keySize": 2048}),
        "spec.keySize is only allowed when spec.algorithm is RS256, PS256 or RSA-OAEP-256",
    ),
    Invalid(
        "an RSA key size outside 2048, 3072 and 4096 is rejected",
        edited(SIGNING_KEY, {"spec.algorithm": "RS256", "spec.keySize": 1024}),
        "spec.keySize: Unsupported value: 1024",
    ),
    Invalid(
        "a prePublish as long as the rotation period is rejected",
        edited(SIGNING_KEY, {"spec.rotation.prePublish": "720h"}),
        "spec.rotation.prePublish must be shorter than spec.rotation.every",
    ),
    Invalid(
        "a rotation period under one second is rejected",
        edited(SIGNING_KEY, {"spec.rotation.every": "500ms", "spec.rotation.prePublish": "1ms"}),
        "spec.rotation.every must be at least 1s",
    ),
    Invalid(
        "an RSA key rotating more often than hourly is rejected",
        edited(
            SIGNING_KEY,
            {
                "spec.algorithm": "RS256",
                "spec.keySize": 4096,
                "spec.rotation": {"every": "59m", "prePublish": "10m", "retainAfter": "1h"},
            },
        ),
        "spec.rotation.every: Invalid value: spec.rotation.every must be at least "
        "1h for RSA keys (spec.algorithm RS256, PS256 or RSA-OAEP-256)",
    ),
    Invalid(
        "an RSA encryption key has the same floor, with its use inferred",
        edited(
            SIGNING_KEY,
            {
                "spec.algorithm": "RSA-OAEP-256",
                "spec.rotation": {"every": "1s", "prePublish": "0s", "retainAfter": "1s"},
            },
        ),
        "spec.rotation.every must be at least 1h for RSA keys",
    ),
    Invalid(
        "a retainAfter of more than 24 rotation periods is rejected",
        edited(SIGNING_KEY, {"spec.rotation": {"every": "1m", "prePublish": "10s"}}),
        "spec.rotation.retainAfter: Invalid value: spec.rotation.retainAfter must "
        "be at most 24 times spec.rotation.every",
    ),
    Invalid(
        "a rotation period in days is rejected because durations are Go durations",
        edited(SIGNING_KEY, {"spec.rotation.every": "30d"}),
        "spec.rotation.every in body should match",
    ),
    Invalid(
        "a retainAfter that is not a duration is rejected",
        edited(SIGNING_KEY, {"spec.rotation.retainAfter": "one day"}),
        "spec.rotation.retainAfter in body should match",
    ),
    Invalid(
        "a secret name with capitals is rejected",
        edited(SIGNING_KEY, {"spec.secretName": "My-Keys"}),
        "spec.secretName in body should match",
    ),
    # OAuth2Client
    Invalid(
        "a client without audiences is rejected",
        edited(CLIENT, {"spec.audiences": REMOVE}),
        "spec.audiences: Required value",
    ),
    Invalid(
        "a client with an empty audience list is rejected",
        edited(CLIENT, {"spec.audiences": []}),
        "spec.audiences: Invalid value: 0: spec.audiences in body should have at least 1 items",
    ),
    Invalid(
        "a client with an empty grant type list is rejected",
        edited(CLIENT, {"spec.grantTypes": []}),
        "spec.grantTypes in body should have at least 1 items",
    ),
    Invalid(
        "a client with the authorization code grant is rejected",
        edited(CLIENT, {"spec.grantTypes": ["authorization_code"]}),
        'spec.grantTypes[0]: Unsupported value: "authorization_code"',
    ),
    Invalid(
        "a client listing a grant type twice is rejected",
        edited(CLIENT, {"spec.grantTypes": ["client_credentials", "client_credentials"]}),
        'spec.grantTypes[1]: Duplicate value: "client_credentials"',
    ),
    Invalid(
        "a client with an unknown auth method is rejected",
        edited(CLIENT, {"spec.authMethod": "tls_client_auth"}),
        'spec.authMethod: Unsupported value: "tls_client_auth"',
    ),
    Invalid(
        "a scope containing a space is rejected",
        edited(CLIENT, {"spec.scopes": ["event view"]}),
        "spec.scopes[0] in body should match",
    ),
    Invalid(
        "a scope containing a double quote is rejected",
        edited(CLIENT, {"spec.scopes": ['event"view']}),
        "spec.scopes[0] in body should match",
    ),
    Invalid(
        "a token lifetime under ten seconds is rejected",
        edited(CLIENT, {"spec.tokenLifetime": "5s"}),
        "spec.tokenLifetime must be between 10s and 24h",
    ),
    Invalid(
        "a token lifetime over a day is rejected",
        edited(CLIENT, {"spec.tokenLifetime": "25h"}),
        "spec.tokenLifetime must be between 10s and 24h",
    ),
    Invalid(
        "a token lifetime written in words is rejected",
        edited(CLIENT, {"spec.tokenLifetime": "15 minutes"}),
        "spec.tokenLifetime in body should match",
    ),
    Invalid(
        "an unknown token format is rejected",
        edited(CLIENT, {"spec.tokenFormat": "paseto"}),
        'spec.tokenFormat: Unsupported value: "paseto"',
    ),
    Invalid(
        "a client id starting with a dash is rejected",
        edited(CLIENT, {"spec.clientId": "-client"}),
        "spec.clientId in body should match",
    ),
    Invalid(
        "a client id outside any namespace is rejected",
        edited(CLIENT, {"spec.clientId": "calendar-client"}),
        'spec.clientId: Invalid value: "calendar-client": spec.clientId must be '
        "<namespace>.<id>: the namespace of this client, a dot and the rest, e.g. tasks.reporter",
    ),
    Invalid(
        "a client id that is a ServiceAccount subject is rejected",
        edited(CLIENT, {"spec.clientId": "kubemint:serviceaccount:calendar:runner"}),
        "spec.clientId must not start with kubemint: (the prefix of kubemint ServiceAccount "
        "subjects); use <namespace>.<id>, this namespace and a dot first",
    ),
    Invalid(
        "a signing key reference that is not a resource name is rejected",
        edited(CLIENT, {"spec.signingKey": "Default_Key"}),
        "spec.signingKey in body should match",
    ),
    Invalid(
        "private_key_jwt without any client keys is rejected",
        edited(KEY_CLIENT, {"spec.jwks": REMOVE}),
        "spec.jwks or spec.jwksSecretRef is required when spec.authMethod is private_key_jwt",
    ),
    Invalid(
        "inline keys together with a key Secret are rejected",
        edited(KEY_CLIENT, {"spec.jwksSecretRef": {"name": "client-jwks"}}),
        "spec.jwks and spec.jwksSecretRef are mutually exclusive",
    ),
    Invalid(
        "inline keys on a client_secret_basic client are rejected",
        edited(KEY_CLIENT, {"spec.authMethod": "client_secret_basic"}),
        "spec.jwks is only allowed when spec.authMethod is private_key_jwt",
    ),
    Invalid(
        "a key Secret on a client without private_key_jwt is rejected",
        edited(CLIENT, {"spec.jwksSecretRef": {"name": "client-jwks"}}),
        "spec.jwksSecretRef is only allowed when spec.authMethod is private_key_jwt",
    ),
    Invalid(
        "a key Secret reference without a name is rejected",
        edited(KEY_CLIENT, {"spec.jwks": REMOVE, "spec.jwksSecretRef": {"key": "jwks.json"}}),
        "spec.jwksSecretRef.name: Required value",
    ),
    Invalid(
        "an empty inline key set is rejected",
        edited(KEY_CLIENT, {"spec.jwks.keys": []}),
        "spec.jwks.keys in body should have at least 1 items",
    ),
    Invalid(
        "an inline key without kty is rejected",
        edited(KEY_CLIENT, {"spec.jwks.keys.0.kty": REMOVE}),
        "spec.jwks.keys[0].kty: Required value",
    ),
    Invalid(
        "an inline symmetric key is rejected",
        edited(KEY_CLIENT, {"spec.jwks.keys.0": {"kty": "oct", "k": "c2VjcmV0"}}),
        'spec.jwks.keys[0].kty: Unsupported value: "oct"',
    ),
    Invalid(
        "an inline key carrying its private part is rejected",
        edited(KEY_CLIENT, {"spec.jwks.keys.0.d": "c2VjcmV0"}),
        "spec.jwks.keys[].d must not be set",
    ),
    Invalid(
        "an inline EC key without its y coordinate is rejected",
        edited(KEY_CLIENT, {"spec.jwks.keys.0.y": REMOVE}),
        "spec.jwks.keys[] with kty EC requires crv, x and y",
    ),
    Invalid(
        "an inline RSA key without its modulus is rejected",
        edited(KEY_CLIENT, {"spec.jwks.keys.0": {"kty": "RSA", "e": "AQAB"}}),
        "spec.jwks.keys[] with kty RSA requires n and e",
    ),
    Invalid(
        "an opaque-token client with an encryption key is rejected",
        edited(CLIENT, {"spec.tokenFormat": "opaque", "spec.encryptionKey": "token-encryption"}),
        "spec.encryptionKey cannot be combined with spec.tokenFormat opaque",
    ),
    Invalid(
        "secret rotation on a private_key_jwt client is rejected",
        edited(KEY_CLIENT, {"spec.secret": {"rotateEvery": "720h"}}),
        "spec.secret.rotateEvery is only allowed when spec.authMethod uses a client secret",
    ),
    Invalid(
        "secret rotation on a client without credentials is rejected",
        edited(CLIENT, {"spec.authMethod": "none", "spec.secret": {"rotateEvery": "720h"}}),
        "spec.secret.rotateEvery is only allowed when spec.authMethod uses a client secret",
    ),
    Invalid(
        "a secret overlap as long as the rotation period is rejected",
        edited(CLIENT, {"spec.secret": {"rotateEvery": "1h"}}),
        "spec.secret.overlap must be shorter than spec.secret.rotateEvery",
    ),
    Invalid(
        "a label value longer than 63 characters on the client Secret is rejected",
        edited(CLIENT, {"spec.secret": {"template": {"labels": {"team": "t" * 64}}}}),
        "spec.secret.template.labels.team: Too long",
    ),
    # ServiceAccount
    Invalid(
        "a service account without clients is rejected",
        edited(SERVICE_ACCOUNT, {"spec.clients": REMOVE}),
        "spec.clients: Required value",
    ),
    Invalid(
        "a service account with an empty client list is rejected",
        edited(SERVICE_ACCOUNT, {"spec.clients": []}),
        "spec.clients in body should have at least 1 items",
    ),
    Invalid(
        "app passwords without a Secret name are rejected",
        edited(SERVICE_ACCOUNT, {"spec.appPasswords.secretName": REMOVE}),
        "spec.appPasswords.secretName: Required value",
    ),
    Invalid(
        "an app password overlap longer than the rotation period is rejected",
        edited(SERVICE_ACCOUNT, {"spec.appPasswords.overlap": "200h"}),
        "spec.appPasswords.overlap must be shorter than spec.appPasswords.rotateEvery",
    ),
    Invalid(
        "federating the same Kubernetes service account twice is rejected",
        edited(
            SERVICE_ACCOUNT,
            {"spec.federation.kubernetes": [{"serviceAccountName": "robot"}] * 2},
        ),
        "spec.federation.kubernetes[1]: Duplicate value",
    ),
    Invalid(
        "a federated issuer over plain http is rejected",
        edited(SERVICE_ACCOUNT, {"spec.federation.issuers.0.issuer": "http://ci.example.com"}),
        "spec.federation.issuers[0].issuer in body should match",
    ),
    Invalid(
        "a federated issuer with both a JWKS URL and a key Secret is rejected",
        edited(SERVICE_ACCOUNT, {"spec.federation.issuers.0.jwksSecretRef": {"name": "ci-keys"}}),
        "spec.federation.issuers[] must set exactly one of jwksUri and jwksSecretRef",
    ),
    Invalid(
        "a federated issuer with no verification keys is rejected",
        edited(SERVICE_ACCOUNT, {"spec.federation.issuers.0.jwksUri": REMOVE}),
        "spec.federation.issuers[] must set exactly one of jwksUri and jwksSecretRef",
    ),
    Invalid(
        "a federated issuer condition longer than 4096 characters is rejected",
        edited(SERVICE_ACCOUNT, {"spec.federation.issuers.0.when": "true || " * 600 + "true"}),
        "spec.federation.issuers[0].when: Too long",
    ),
    Invalid(
        "a custom claim named sub is rejected",
        edited(SERVICE_ACCOUNT, {"spec.claims.sub": "admin"}),
        "spec.claims must not set claims that the token server sets or that carry authorization "
        "or identity, found: sub",
    ),
    Invalid(
        "custom claims named scope and client_id are rejected together",
        edited(SERVICE_ACCOUNT, {"spec.claims.scope": "admin", "spec.claims.client_id": "x"}),
        "spec.claims must not set claims that the token server sets or that carry authorization "
        "or identity, found: client_id scope",
    ),
    Invalid(
        "custom claims that carry authorization or identity are rejected",
        edited(
            SERVICE_ACCOUNT,
            {
                "spec.claims.scp": "admin",
                "spec.claims.entitlements": "x",
                "spec.claims.auth_time": 1,
                "spec.claims.email": "admin@example.com",
            },
        ),
        "found: auth_time scp entitlements email",
    ),
    Invalid(
        "a list under a refused claim name is rejected by the schema",
        edited(SERVICE_ACCOUNT, {"spec.claims.roles": ["admin"]}),
        "spec.claims.roles in body must be of type integer,string",
    ),
    Invalid(
        "more than 32 custom claims are rejected",
        edited(SERVICE_ACCOUNT, {"spec.claims": {f"claim{i}": i for i in range(33)}}),
        "spec.claims: Too many: 33: must have at most 32 items",
    ),
    # AccessRule
    Invalid(
        "a rule without an audience is rejected",
        edited(ACCESS_RULE, {"spec.audience": REMOVE}),
        "spec.audience: Required value",
    ),
    Invalid(
        "a rule with no subjects is rejected",
        edited(ACCESS_RULE, {"spec.subjects": []}),
        "spec.subjects in body should have at least 1 items",
    ),
    Invalid(
        "a rule for a subject of kind User is rejected",
        edited(ACCESS_RULE, {"spec.subjects.0.kind": "User"}),
        'spec.subjects[0].kind: Unsupported value: "User"',
    ),
    Invalid(
        "a rule subject without a name is rejected",
        edited(ACCESS_RULE, {"spec.subjects.0.name": REMOVE}),
        "spec.subjects[0].name: Required value",
    ),
    Invalid(
        "a rule subject in an invalid namespace is rejected",
        edited(ACCESS_RULE, {"spec.subjects.0.namespace": "Tasks"}),
        "spec.subjects[0].namespace in body should match",
    ),
    Invalid(
        "a granted scope with a backslash is rejected",
        edited(ACCESS_RULE, {"spec.scopes": ["event\\view"]}),
        "spec.scopes[0] in body should match",
    ),
    Invalid(
        "an account claim that is not a plain name is rejected",
        edited(ACCESS_RULE, {"spec.accountClaims": ["team", "https://x.example.com/roles"]}),
        "spec.accountClaims[1] in body should match",
    ),
    Invalid(
        "a forward-auth path without a leading slash is rejected",
        edited(ACCESS_RULE, {"spec.http.0.paths": ["/api", "events"]}),
        'spec.http[].paths entries must start with "/"',
    ),
    Invalid(
        "a forward-auth rule for the TRACE method is rejected",
        edited(ACCESS_RULE, {"spec.http.0.methods": ["TRACE"]}),
        'spec.http[0].methods[0]: Unsupported value: "TRACE"',
    ),
    Invalid(
        "a forward-auth host given as a URL is rejected",
        edited(ACCESS_RULE, {"spec.http.0.hosts": ["https://calendar.example.com"]}),
        "spec.http[0].hosts[0] in body should match",
    ),
    Invalid(
        "a rule condition longer than 4096 characters is rejected",
        edited(ACCESS_RULE, {"spec.when": "true || " * 600 + "true"}),
        "spec.when: Too long",
    ),
    # ServiceAccount trustedIssuers
    Invalid(
        "a trusted issuer reference without a name is rejected",
        edited(SERVICE_ACCOUNT, {"spec.federation.trustedIssuers": [{"subject": "x"}]}),
        "spec.federation.trustedIssuers[0].name: Required value",
    ),
    Invalid(
        "a trusted issuer named twice is rejected",
        edited(
            SERVICE_ACCOUNT,
            {"spec.federation.trustedIssuers": [{"name": "github"}, {"name": "github"}]},
        ),
        "spec.federation.trustedIssuers[1]: Duplicate value",
    ),
    # TrustedIssuer
    Invalid(
        "a trusted issuer with neither jwksUri nor jwks is rejected",
        edited(TRUSTED_ISSUER, {"spec.jwksUri": REMOVE}),
        "spec.jwksUri or spec.jwks must be set, and not both",
    ),
    Invalid(
        "a trusted issuer with both jwksUri and jwks is rejected",
        edited(TRUSTED_ISSUER, {"spec.jwks": {"keys": [EC_PUBLIC_JWK]}}),
        "spec.jwksUri or spec.jwks must be set, and not both",
    ),
    Invalid(
        "a trusted issuer over http is rejected",
        edited(TRUSTED_ISSUER, {"spec.issuer": "http://token.actions.githubusercontent.com"}),
        "spec.issuer in body should match '^https://'",
    ),
    Invalid(
        "a trusted issuer with a private key in jwks is rejected",
        edited(INLINE_TRUSTED_ISSUER, {"spec.jwks.keys.0.d": "c2VjcmV0"}),
        "spec.jwks.keys[].d must not be set",
    ),
)


def kubectl_create(cluster: ControlPlane, namespace: str, body: Manifest) -> Any:
    return cluster.kubectl(
        "create", "-f", "-", "-n", namespace, stdin=json.dumps(body), check=False
    )


@pytest.mark.parametrize("base", [pytest.param(b, id=b["metadata"]["name"]) for b in VALID_BASES])
def test_the_valid_base_of_the_invalid_cases_is_accepted(
    cluster: ControlPlane, namespace: str, base: Manifest
) -> None:
    result = kubectl_create(cluster, namespace, base)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(edited(SIGNING_KEY, {"spec.algorithm": "RSA-OAEP-256"}), id="no use"),
        pytest.param(
            edited(SIGNING_KEY, {"spec.algorithm": "RSA-OAEP-256", "spec.use": "enc"}),
            id="use enc",
        ),
    ],
)
def test_an_encryption_key_needs_only_its_algorithm(
    cluster: ControlPlane, namespace: str, body: Manifest
) -> None:
    """No schema default for `use`: the operator infers enc from RSA-OAEP-256."""
    result = kubectl_create(cluster, namespace, body)
    assert result.returncode == 0, result.stderr
    stored = cluster.kubectl(
        "get", "signingkey", "key", "-n", namespace, "-o", "jsonpath={.spec.use}"
    ).stdout
    assert stored == body["spec"].get("use", "")


@pytest.mark.parametrize(
    "rotation",
    [
        pytest.param(("RS256", {"every": "1h", "prePublish": "30m"}), id="RSA hourly"),
        pytest.param(
            ("ES256", {"every": "1s", "prePublish": "0s", "retainAfter": "24s"}),
            id="EC every second, retainAfter 24 periods",
        ),
    ],
)
def test_the_fastest_allowed_schedules_are_accepted(
    cluster: ControlPlane, namespace: str, rotation: tuple[str, dict[str, str]]
) -> None:
    algorithm, schedule = rotation
    body = edited(SIGNING_KEY, {"spec.algorithm": algorithm, "spec.rotation": schedule})
    result = kubectl_create(cluster, namespace, body)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in INVALID])
def test_admission_rejects_an_invalid_object_naming_the_field(
    cluster: ControlPlane, namespace: str, case: Invalid
) -> None:
    result = kubectl_create(cluster, namespace, case.manifest)
    assert result.returncode != 0, f"accepted: {json.dumps(case.manifest)}"
    assert case.error in result.stderr, result.stderr


@dataclass(frozen=True)
class Transition:
    """An update admission must refuse once the object exists."""

    name: str
    before: Manifest
    patch: Manifest
    error: str


TRANSITIONS: tuple[Transition, ...] = (
    Transition(
        "changing the client id is rejected",
        edited(CLIENT, {"spec.clientId": "calendar.client"}),
        {"spec": {"clientId": "calendar.other"}},
        "spec.clientId: Forbidden: spec.clientId is immutable",
    ),
    Transition(
        "removing the client id is rejected",
        edited(CLIENT, {"spec.clientId": "calendar.client"}),
        {"spec": {"clientId": None}},
        "spec.clientId cannot be added or removed after creation",
    ),
    Transition(
        "adding a client id after creation is rejected",
        CLIENT,
        {"spec": {"clientId": "calendar.client"}},
        "spec.clientId cannot be added or removed after creation",
    ),
)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in TRANSITIONS])
def test_admission_rejects_an_invalid_update(
    cluster: ControlPlane, namespace: str, case: Transition
) -> None:
    kind, name = case.before["kind"], case.before["metadata"]["name"]
    created = kubectl_create(cluster, namespace, case.before)
    assert created.returncode == 0, created.stderr
    result = cluster.kubectl(
        "patch",
        f"{kind.lower()}.kubemint.io/{name}",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps(case.patch),
        check=False,
    )
    assert result.returncode != 0, f"patch {case.patch} was accepted"
    assert case.error in result.stderr, result.stderr


def test_other_fields_of_a_client_with_a_fixed_client_id_stay_editable(
    cluster: ControlPlane, namespace: str
) -> None:
    body = edited(CLIENT, {"spec.clientId": "calendar.client"})
    assert kubectl_create(cluster, namespace, body).returncode == 0
    result = cluster.kubectl(
        "patch",
        "oauth2client.kubemint.io/client",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": {"clientId": "calendar.client", "tokenLifetime": "5m"}}),
        check=False,
    )
    assert result.returncode == 0, result.stderr


# -- examples --------------------------------------------------------------------------------


# examples/forward-auth/ configures proxies, mostly with third-party kinds whose CRDs this test
# cluster lacks (Traefik's Middleware, Envoy Gateway's and the Gateway API's, Istio's), and
# envoy.yaml is an Envoy bootstrap, not a Kubernetes object; so that directory is not applied
# here (tests/unit/test_examples.py checks those files instead). The exception is
# ingress-nginx.yaml, a plain Ingress in the calendar scenario's namespace calendar, whose
# namespaces file is therefore the calendar scenario's.
FORWARD_AUTH_DIR = EXAMPLES_DIR / "forward-auth"
APPLIED_FORWARD_AUTH = {FORWARD_AUTH_DIR / "ingress-nginx.yaml"}


def example_files() -> list[Path]:
    return sorted(
        path
        for path in EXAMPLES_DIR.rglob("*.yaml")
        if FORWARD_AUTH_DIR not in path.parents or path in APPLIED_FORWARD_AUTH
    )


def namespaces_file(example: Path) -> Path | None:
    directory = EXAMPLES_DIR / "calendar" if example in APPLIED_FORWARD_AUTH else example.parent
    candidate = directory / "00-namespaces.yaml"
    return candidate if candidate.is_file() else None


def test_there_are_examples_to_apply() -> None:
    assert {path.parent.name for path in example_files()} >= {"quickstart", "calendar"}


@pytest.mark.parametrize(
    "example",
    [pytest.param(path, id=str(path.relative_to(EXAMPLES_DIR))) for path in example_files()],
)
def test_every_example_is_accepted_by_the_api_server(cluster: ControlPlane, example: Path) -> None:
    namespaces = namespaces_file(example)
    if namespaces is not None:
        cluster.kubectl("apply", "--server-side", "-f", str(namespaces))
    try:
        result = cluster.kubectl("apply", "--server-side", "-f", str(example), check=False)
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr, result.stderr
    finally:
        if example != namespaces:
            cluster.kubectl(
                "delete", "-f", str(example), "--ignore-not-found", "--wait=false", check=False
            )


@pytest.mark.parametrize(
    "directory",
    sorted(
        {path.parent.relative_to(EXAMPLES_DIR) for path in example_files()}
        - {FORWARD_AUTH_DIR.relative_to(EXAMPLES_DIR)}  # only partly Kubernetes objects (above)
    ),
    ids=str,
)
def test_every_example_directory_applies_in_one_command(
    cluster: ControlPlane, directory: Path
) -> None:
    files = sorted((EXAMPLES_DIR / directory).glob("*.yaml"))
    try:
        result = cluster.kubectl(
            "apply", "--server-side", "-f", str(EXAMPLES_DIR / directory), check=False
        )
        assert result.returncode == 0, result.stderr
    finally:
        for path in files:
            if path != namespaces_file(path):
                cluster.kubectl(
                    "delete", "-f", str(path), "--ignore-not-found", "--wait=false", check=False
                )


@pytest.mark.parametrize(
    "example",
    [pytest.param(path, id=str(path.relative_to(EXAMPLES_DIR))) for path in example_files()],
)
def test_every_example_file_starts_with_a_comment_and_declares_its_namespaces(
    example: Path,
) -> None:
    text = example.read_text()
    assert text.startswith("# "), f"{example}: should start with a comment explaining it"
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    assert documents, f"{example}: no objects"
    declared = {doc["metadata"]["name"] for doc in documents if doc["kind"] == "Namespace"}
    shared = namespaces_file(example)
    if shared is not None:
        declared |= {doc["metadata"]["name"] for doc in yaml.safe_load_all(shared.read_text())}
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    used = {doc["metadata"]["namespace"] for doc in documents if doc["kind"] not in cluster_scoped}
    assert used <= declared, f"{example}: namespaces {used - declared} are not declared"


# -- kubectl get / explain -------------------------------------------------------------------

ONE_OF_EACH = (SIGNING_KEY, CLIENT, SERVICE_ACCOUNT, ACCESS_RULE, TRUSTED_ISSUER)


@pytest.fixture
def one_of_each(cluster: ControlPlane, namespace: str) -> str:
    """`namespace` holding one object of each kubemint kind."""
    for body in ONE_OF_EACH:
        cluster.kubectl("create", "-f", "-", "-n", namespace, stdin=json.dumps(body))
    return namespace


def test_kubectl_get_kubemint_lists_every_kind(cluster: ControlPlane, one_of_each: str) -> None:
    output = cluster.kubectl("get", "kubemint", "-n", one_of_each, "-o", "name").stdout.split()
    assert sorted(output) == sorted(
        f"{body['kind'].lower()}.kubemint.io/{body['metadata']['name']}" for body in ONE_OF_EACH
    )


@dataclass(frozen=True)
class Columns:
    """The header `kubectl get <resource>` prints, without and with -o wide."""

    resource: str
    default: tuple[str, ...]
    wide: tuple[str, ...]


COLUMNS: tuple[Columns, ...] = (
    Columns(
        "signingkeys",
        ("NAME", "ALGORITHM", "ACTIVE-KID", "NEXT-ROTATION", "READY", "AGE"),
        ("NAME", "ALGORITHM", "USE", "ACTIVE-KID", "NEXT-KID", "NEXT-ROTATION", "READY", "REASON"),
    ),
    Columns(
        "oauth2clients",
        ("NAME", "CLIENT-ID", "READY", "AGE"),
        ("NAME", "CLIENT-ID", "AUTH", "SECRET", "READY", "REASON", "AGE"),
    ),
    Columns(
        "serviceaccounts.kubemint.io",
        ("NAME", "SUBJECT", "READY", "AGE"),
        ("NAME", "SUBJECT", "CLIENTS", "READY", "REASON", "AGE"),
    ),
    Columns(
        "accessrules",
        ("NAME", "AUDIENCE", "READY", "AGE"),
        ("NAME", "AUDIENCE", "READY", "REASON", "AGE"),
    ),
    Columns(
        "trustedissuers",
        ("NAME", "ISSUER", "READY", "AGE"),
        ("NAME", "ISSUER", "READY", "REASON", "AGE"),
    ),
)


def header(output: str) -> list[str]:
    return output.splitlines()[0].split()


def table_row(output: str, index: int = 0) -> dict[str, str]:
    """Row `index` of a `kubectl get` table as {column: cell}; empty cells stay empty."""
    lines = output.splitlines()
    starts = [match.start() for match in re.finditer(r"\S+", lines[0])]
    bounds = [*zip(starts, [*starts[1:], None], strict=True)]
    return {
        lines[0][start:end].strip(): lines[1 + index][start:end].strip() for start, end in bounds
    }


@pytest.mark.parametrize("columns", [pytest.param(c, id=c.resource) for c in COLUMNS])
def test_kubectl_get_prints_the_printer_columns(
    cluster: ControlPlane, one_of_each: str, columns: Columns
) -> None:
    default = cluster.kubectl("get", columns.resource, "-n", one_of_each).stdout
    assert header(default) == list(columns.default)
    wide = cluster.kubectl("get", columns.resource, "-n", one_of_each, "-o", "wide").stdout
    assert header(wide)[: len(columns.wide)] == list(columns.wide)


def test_the_ready_and_reason_columns_show_the_ready_condition(
    cluster: ControlPlane, one_of_each: str
) -> None:
    condition = {
        "type": "Ready",
        "status": "False",
        "reason": "SigningKeyNotFound",
        "message": "SigningKey kubemint-system/default does not exist",
        "lastTransitionTime": "2025-01-01T00:00:00Z",
        "observedGeneration": 1,
    }
    cluster.kubectl(
        "patch",
        "oauth2client.kubemint.io/client",
        "-n",
        one_of_each,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"clientId": "ns.client", "conditions": [condition]}}),
    )
    wide = cluster.kubectl("get", "oauth2clients", "client", "-n", one_of_each, "-o", "wide")
    row = table_row(wide.stdout)
    assert row["CLIENT-ID"] == "ns.client"
    assert row["READY"] == "False"
    assert row["REASON"] == "SigningKeyNotFound"


@dataclass(frozen=True)
class Defaulted:
    """A value the API server fills in when the user leaves the field out."""

    name: str
    body: Manifest
    jsonpath: str
    value: str


DEFAULTED: tuple[Defaulted, ...] = (
    Defaulted(
        "a signing key with no spec is ES256, its use left to infer (sig)",
        {"apiVersion": API_VERSION, "kind": "SigningKey", "metadata": {"name": "bare"}},
        "{.spec.algorithm}/{.spec.use}",
        "ES256/",
    ),
    Defaulted(
        "a signing key rotates every 720h with 24h pre-publication and retention",
        edited(SIGNING_KEY, {"spec.rotation": REMOVE}),
        "{.spec.rotation.every}/{.spec.rotation.prePublish}/{.spec.rotation.retainAfter}",
        "720h/24h/24h",
    ),
    Defaulted(
        "a client uses client_credentials with client_secret_basic",
        CLIENT,
        "{.spec.grantTypes[*]}/{.spec.authMethod}",
        "client_credentials/client_secret_basic",
    ),
    Defaulted(
        "a client gets 15 minute JWTs signed by the default key",
        CLIENT,
        "{.spec.tokenLifetime}/{.spec.tokenFormat}/{.spec.signingKey}/{.spec.disabled}",
        "15m/jwt/default/false",
    ),
    Defaulted(
        "a client secret keeps working for an hour after rotation",
        CLIENT,
        "{.spec.secret.overlap}",
        "1h",
    ),
    Defaulted(
        "a key Secret reference reads jwks.json",
        edited(KEY_CLIENT, {"spec.jwks": REMOVE, "spec.jwksSecretRef": {"name": "keys"}}),
        "{.spec.jwksSecretRef.key}",
        "jwks.json",
    ),
    Defaulted(
        "an app password keeps working for an hour after rotation",
        SERVICE_ACCOUNT,
        "{.spec.appPasswords.overlap}/{.spec.disabled}",
        "1h/false",
    ),
)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in DEFAULTED])
def test_the_api_server_applies_the_defaults(
    cluster: ControlPlane, namespace: str, case: Defaulted
) -> None:
    created = cluster.kubectl(
        "create",
        "-f",
        "-",
        "-n",
        namespace,
        "-o",
        f"jsonpath={case.jsonpath}",
        stdin=json.dumps(case.body),
    )
    assert created.stdout == case.value


def crd_schema(plural: str) -> Manifest:
    crd = yaml.safe_load((CRD_DIR / f"kubemint.io_{plural}.yaml").read_text())
    schema: Manifest = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("resource", "plural", "path"),
    [
        pytest.param("oauth2client.spec", "oauth2clients", ("spec",), id="oauth2client.spec"),
        pytest.param(
            "signingkeys.spec.rotation", "signingkeys", ("spec", "rotation"), id="rotation"
        ),
        pytest.param("kmsa.spec.federation", "serviceaccounts", ("spec", "federation"), id="kmsa"),
        pytest.param("accessrules.spec.http", "accessrules", ("spec", "http"), id="http"),
    ],
)
def test_kubectl_explain_prints_the_field_descriptions(
    cluster: ControlPlane, resource: str, plural: str, path: tuple[str, ...]
) -> None:
    node = crd_schema(plural)
    description = ""
    for part in path:
        described = node["properties"][part]
        description = described["description"]
        node = described.get("items", described)
    explained = words(cluster.kubectl("explain", resource, "--api-version", API_VERSION).stdout)
    assert words(description) in explained
    for name, child in node["properties"].items():
        assert re.search(rf"\b{re.escape(name)}\s*<", explained), f"{resource}.{name} not listed"
        assert words(child["description"]) in explained, f"{resource}.{name} undocumented"
