"""Attacks on what an AccessRule's `when` sees as `claims`, done as tenants (issue 9, finding 5).

The audience owner writes `when: claims.repository == "victim/repo"` believing `claims` were
verified by the issuer they name. A tenant whose account the rule grants (a CI gateway team)
controls its own `spec.federation.issuers` (any issuer URL, keys from its own Secret) and its
clients' own assertions, so it can mint every claim such an expression checks. These tests
are that tenant: its forged claims must never satisfy `claims`, while the same claims from an
issuer a cluster admin trusts (a TrustedIssuer in the token server's namespace; the test, as
the admin, holds that issuer's key) and the cluster's own projected tokens still do.

Each test first proves the server's view holds the victim's rule (see `_view_holds_rules`),
so a refusal cannot be a watch lag; each ends with the victim choosing to accept the tenant's
word (`tenantClaims`) and the same request then succeeding, so the refusal came from what
`claims` means and nothing else.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc.jwk import OctKey

from kubemint.crypto import keys
from kubemint.crypto.jwt import Signer, sign_with_header
from kubemint.crypto.keys import KeyMaterial
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import apply, custom, get, secret_data, wait_ready
from tests.integration.tenants import Tenant, TenantFactory

GITHUB = "https://token.actions.githubusercontent.com"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
VICTIM_WHEN = f"claims.iss == '{GITHUB}' && claims.repository == 'victim/repo'"
OPT_IN_WHEN = "request.issuerSource == '{source}' && tenantClaims.repository == 'victim/repo'"


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@dataclass
class Teams:
    """The API owner (victim) and the team running a CI gateway its rule grants (attacker)."""

    victim: Tenant
    attacker: Tenant
    audience: str  # owned by the victim's namespace
    probe: str  # owned by the attacker's namespace, granted to it without conditions

    @property
    def gateway(self) -> str:
        return f"{self.attacker.namespace}.ci-gateway"


@pytest.fixture
def teams(tenants: TenantFactory, token_server: RunningServer) -> Teams:
    run = uuid.uuid4().hex[:6]
    victim, attacker = tenants(f"t{run}-api"), tenants(f"t{run}-ci")
    return Teams(
        victim,
        attacker,
        f"https://{victim.namespace}.test",
        f"https://{attacker.namespace}.test",
    )


def _rule(
    namespace: str, audience: str, subject: dict[str, str], when: str | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"audience": audience, "subjects": [subject], "scopes": ["deploy"]}
    if when is not None:
        spec["when"] = when
    return custom("AccessRule", "ci", namespace, **spec)


def _rules(teams: Teams, subject: dict[str, str], when: str) -> None:
    """The victim's conditional rule, then the attacker's own unconditional one (in this
    order: see `_view_holds_rules`)."""
    teams.victim.apply(_rule(teams.victim.namespace, teams.audience, subject, when))
    teams.attacker.apply(_rule(teams.attacker.namespace, teams.probe, subject, None))
    wait_ready(teams.victim.cluster, "AccessRule", teams.victim.namespace, "ci")
    wait_ready(teams.attacker.cluster, "AccessRule", teams.attacker.namespace, "ci")


def _keys_secret(name: str, namespace: str, key: KeyMaterial) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"jwks.json": json.dumps({"keys": [key.public_jwk()]})},
    }


def _gateway(teams: Teams, federation: dict[str, Any]) -> None:
    """The attacker's `none` client (every assertion grant) and account `ci`."""
    ns = teams.attacker.namespace
    teams.attacker.apply(
        custom(
            "OAuth2Client",
            "ci-gateway",
            ns,
            authMethod="none",
            grantTypes=["client_credentials", JWT_BEARER, TOKEN_EXCHANGE],
            audiences=[teams.audience, teams.probe],
            scopes=["deploy"],
        ),
        custom("ServiceAccount", "ci", ns, clients=["ci-gateway"], federation=federation),
    )


def _ci_account(teams: Teams) -> dict[str, str]:
    return {"kind": "ServiceAccount", "namespace": teams.attacker.namespace, "name": "ci"}


def _github_token(key: KeyMaterial, issuer: str, **overrides: Any) -> str:
    """A GitHub Actions-shaped OIDC token for `victim/repo`, signed with `key`."""
    now = int(time.time())
    claims = {
        "iss": GITHUB,
        "sub": "repo:victim/repo:ref:refs/heads/main",
        "aud": issuer,
        "repository": "victim/repo",
        "repository_owner": "victim",
        "ref": "refs/heads/main",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        **overrides,
    }
    return Signer(key).sign(claims, typ="JWT")


Present = Callable[[str, str, str], dict[str, str]]  # (client id, JWT, audience) → form


def _as_client_assertion(client_id: str, token: str, audience: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": token,
        "audience": audience,
    }


def _as_jwt_bearer(client_id: str, token: str, audience: str) -> dict[str, str]:
    return {
        "grant_type": JWT_BEARER,
        "client_id": client_id,
        "assertion": token,
        "audience": audience,
    }


def _as_token_exchange(client_id: str, token: str, audience: str) -> dict[str, str]:
    return {
        "grant_type": TOKEN_EXCHANGE,
        "client_id": client_id,
        "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "resource": audience,
    }


PRESENTATIONS: dict[str, Present] = {
    "as a client_assertion": _as_client_assertion,
    "with the jwt-bearer grant": _as_jwt_bearer,
    "in a token exchange": _as_token_exchange,
}


def _post(http: httpx.Client, server: RunningServer, form: dict[str, str]) -> httpx.Response:
    return http.post(server.token_url, data=form)


def _post_until(
    http: httpx.Client,
    server: RunningServer,
    form: Callable[[], dict[str, str]],
    expect: int = 200,
    timeout: float = 15.0,
) -> httpx.Response:
    """Retry (with a fresh form each time: assertions are single-use) until `expect`."""
    response = _post(http, server, form())
    deadline = time.monotonic() + timeout
    while response.status_code != expect and time.monotonic() < deadline:
        time.sleep(0.2)
        response = _post(http, server, form())
    return response


def _view_holds_rules(
    http: httpx.Client, server: RunningServer, form: Callable[[str], dict[str, str]], probe: str
) -> None:
    """Wait until the attacker's token gets its own (unconditional) probe audience. The
    token server watches AccessRules in one stream, in resourceVersion order, and the probe
    rule was created after the victim's: once the probe grants, the view holds the victim's
    rule too, and the account and federation the request authenticates with."""
    response = _post_until(http, server, lambda: form(probe))
    assert response.status_code == 200, response.text


def _refused(response: httpx.Response) -> None:
    assert (response.status_code, response.json().get("error")) == (403, "access_denied"), (
        f"the victim's audience was granted: {response.text}"
    )


def _opt_in(teams: Teams, subject: dict[str, str], source: str) -> None:
    """The victim decides to accept what the tenant asserts (and says so in the rule)."""
    when = OPT_IN_WHEN.format(source=source)
    teams.victim.apply(_rule(teams.victim.namespace, teams.audience, subject, when))
    wait_ready(teams.victim.cluster, "AccessRule", teams.victim.namespace, "ci")


@pytest.mark.parametrize("present", list(PRESENTATIONS), ids=list(PRESENTATIONS))
def test_a_tenant_declared_issuer_with_github_s_url_cannot_satisfy_claims(
    token_server: RunningServer, teams: Teams, http: httpx.Client, present: str
) -> None:
    """The attacker declares `https://token.actions.githubusercontent.com` with its own keys
    and mints the victim's repository: no token for the victim's audience, by any grant."""
    to_form = PRESENTATIONS[present]
    forged_key = keys.generate("ES256")
    teams.attacker.apply(_keys_secret("gh-keys", teams.attacker.namespace, forged_key))
    _gateway(teams, {"issuers": [{"issuer": GITHUB, "jwksSecretRef": {"name": "gh-keys"}}]})
    wait_ready(teams.attacker.cluster, "ServiceAccount", teams.attacker.namespace, "ci")
    _rules(teams, _ci_account(teams), VICTIM_WHEN)

    def form(audience: str) -> dict[str, str]:
        return to_form(teams.gateway, _github_token(forged_key, token_server.issuer), audience)

    _view_holds_rules(http, token_server, form, teams.probe)
    _refused(_post(http, token_server, form(teams.audience)))

    _opt_in(teams, _ci_account(teams), "tenant")
    granted = _post_until(http, token_server, lambda: form(teams.audience))
    assert granted.status_code == 200, granted.text


def test_a_forged_kubernetes_claim_is_not_a_projected_token(
    token_server: RunningServer, teams: Teams, http: httpx.Client
) -> None:
    """`'kubernetes.io' in claims` (the calendar example's "only from pods") cannot be met by
    a tenant-minted `kubernetes.io` claim; the cluster's real projected token still meets it."""
    ns = teams.attacker.namespace
    forged_key = keys.generate("ES256")
    teams.attacker.kubectl("create", "serviceaccount", "runner", "-n", ns)
    teams.attacker.apply(_keys_secret("gh-keys", ns, forged_key))
    _gateway(
        teams,
        {
            "kubernetes": [{"serviceAccountName": "runner"}],
            "issuers": [{"issuer": GITHUB, "jwksSecretRef": {"name": "gh-keys"}}],
        },
    )
    wait_ready(teams.attacker.cluster, "ServiceAccount", ns, "ci")
    _rules(teams, _ci_account(teams), "'kubernetes.io' in claims")
    pod = {"namespace": ns, "serviceaccount": {"name": "runner", "uid": str(uuid.uuid4())}}

    def forged(audience: str) -> dict[str, str]:
        token = _github_token(forged_key, token_server.issuer, **{"kubernetes.io": pod})
        return _as_jwt_bearer(teams.gateway, token, audience)

    _view_holds_rules(http, token_server, forged, teams.probe)
    _refused(_post(http, token_server, forged(teams.audience)))

    projected = teams.attacker.kubectl(
        "create", "token", "runner", "-n", ns, "--audience", token_server.issuer
    ).stdout.strip()
    real = _post(http, token_server, _as_jwt_bearer(teams.gateway, projected, teams.audience))
    assert real.status_code == 200, real.text


def _client_secret_assertion(client_id: str, secret: str, url: str, **extra: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": url,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        **extra,
    }
    return sign_with_header({"alg": "HS256", "typ": "JWT"}, claims, OctKey.import_key(secret))


@pytest.mark.parametrize("method", ["private_key_jwt", "client_secret_jwt"])
def test_a_client_s_own_assertion_claims_never_count_as_issuer_claims(
    token_server: RunningServer, teams: Teams, http: httpx.Client, method: str
) -> None:
    """A client signs its own assertion (RFC 7523 §2.2) with `repository: victim/repo` in it:
    those are the client's words about itself, never `claims`."""
    ns = teams.attacker.namespace
    own_key = keys.generate("ES256")
    spec: dict[str, Any] = {"authMethod": method}
    if method == "private_key_jwt":
        spec["jwks"] = {"keys": [own_key.public_jwk()]}
    teams.attacker.apply(
        custom(
            "OAuth2Client",
            "reporter",
            ns,
            audiences=[teams.audience, teams.probe],
            scopes=["deploy"],
            **spec,
        )
    )
    wait_ready(teams.attacker.cluster, "OAuth2Client", ns, "reporter")
    subject = {"kind": "OAuth2Client", "namespace": ns, "name": "reporter"}
    _rules(teams, subject, "claims.repository == 'victim/repo'")
    credentials = secret_data(teams.attacker.cluster, ns, "reporter-credentials") or {}
    client_id = f"{ns}.reporter"

    def form(audience: str) -> dict[str, str]:
        extra = {"repository": "victim/repo"}
        if method == "private_key_jwt":
            now = int(time.time())
            claims = {
                "iss": client_id,
                "sub": client_id,
                "aud": token_server.token_url,
                "iat": now,
                "exp": now + 60,
                "jti": uuid.uuid4().hex,
                **extra,
            }
            assertion = Signer(own_key).sign(claims, typ="JWT")
        else:
            assertion = _client_secret_assertion(
                client_id, credentials["client-secret"], token_server.token_url, **extra
            )
        return {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "audience": audience,
        }

    _view_holds_rules(http, token_server, form, teams.probe)
    _refused(_post(http, token_server, form(teams.audience)))

    _opt_in(teams, subject, "client")
    granted = _post_until(http, token_server, lambda: form(teams.audience))
    assert granted.status_code == 200, granted.text


def _trusted_issuer(name: str, namespace: str, key: KeyMaterial) -> dict[str, Any]:
    return custom(
        "TrustedIssuer", name, namespace, issuer=GITHUB, jwks={"keys": [key.public_jwk()]}
    )


def test_the_same_claims_from_an_admin_trusted_issuer_satisfy_claims(
    operator: RunningOperator, token_server: RunningServer, teams: Teams, http: httpx.Client
) -> None:
    """A cluster admin defines GitHub as a TrustedIssuer (the test holds GitHub's key); the CI
    team's account references it by name and keeps its own issuer with the same URL. Only a
    token that verifies with the admin's keys satisfies `claims`, and only for victim/repo."""
    ns = teams.attacker.namespace
    github_key, forged_key = keys.generate("ES256"), keys.generate("ES256")
    name = f"github-{uuid.uuid4().hex[:6]}"
    apply(operator.cluster, _trusted_issuer(name, operator.namespace, github_key))
    wait_ready(operator.cluster, "TrustedIssuer", operator.namespace, name)
    teams.attacker.apply(_keys_secret("gh-keys", ns, forged_key))
    _gateway(
        teams,
        {
            "trustedIssuers": [{"name": name}],
            "issuers": [{"issuer": GITHUB, "jwksSecretRef": {"name": "gh-keys"}}],
        },
    )
    account = wait_ready(teams.attacker.cluster, "ServiceAccount", ns, "ci")
    assert account["status"]["federation"]["trustedIssuers"] == [
        {"name": name, "issuer": GITHUB, "found": True}
    ]
    _rules(teams, _ci_account(teams), VICTIM_WHEN)

    def form(key: KeyMaterial, audience: str, **claims: Any) -> dict[str, str]:
        token = _github_token(key, token_server.issuer, **claims)
        return _as_client_assertion(teams.gateway, token, audience)

    _view_holds_rules(http, token_server, lambda aud: form(forged_key, aud), teams.probe)
    _refused(_post(http, token_server, form(forged_key, teams.audience)))
    granted = _post_until(http, token_server, lambda: form(github_key, teams.audience))
    assert granted.status_code == 200, granted.text
    other_repo = _post(http, token_server, form(github_key, teams.audience, repository="a/b"))
    _refused(other_repo)


def test_a_tenant_s_own_trusted_issuer_is_not_honoured(
    operator: RunningOperator, token_server: RunningServer, teams: Teams, http: httpx.Client
) -> None:
    """A tenant can create a TrustedIssuer only in its own namespace (RBAC), where it is
    refused with WrongNamespace; naming it from an account finds nothing there, so tokens
    signed with its keys authenticate nobody (while the account's own issuer still works)."""
    ns = teams.attacker.namespace
    forged_key, own_key = keys.generate("ES256"), keys.generate("ES256")
    in_server = teams.attacker.kubectl(
        "apply",
        "--server-side",
        "-f",
        "-",
        stdin=json.dumps(_trusted_issuer("github", operator.namespace, forged_key)),
        check=False,
    )
    assert in_server.returncode != 0
    assert "forbidden" in in_server.stderr.lower()
    teams.attacker.apply(_trusted_issuer("github", ns, forged_key))
    refused = wait_ready(teams.attacker.cluster, "TrustedIssuer", ns, "github", status="False")
    ready = next(c for c in refused["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "WrongNamespace"

    own = "https://ci.attacker.test"
    teams.attacker.apply(_keys_secret("own-keys", ns, own_key))
    _gateway(
        teams,
        {
            "trustedIssuers": [{"name": "github"}],
            "issuers": [{"issuer": own, "jwksSecretRef": {"name": "own-keys"}}],
        },
    )
    account = wait_ready(teams.attacker.cluster, "ServiceAccount", ns, "ci", status="False")
    ready = next(c for c in account["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "TrustedIssuerNotFound"
    assert "spec.federation.trustedIssuers[0].name" in ready["message"]
    teams.attacker.apply(_rule(ns, teams.probe, _ci_account(teams), None))

    def form(key: KeyMaterial, iss: str) -> dict[str, str]:
        token = _github_token(key, token_server.issuer, iss=iss)
        return _as_client_assertion(teams.gateway, token, teams.probe)

    works = _post_until(http, token_server, lambda: form(own_key, own))
    assert works.status_code == 200, works.text  # the view holds the account
    response = _post(http, token_server, form(forged_key, GITHUB))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert get(operator.cluster, "TrustedIssuer", operator.namespace, "github") is None
