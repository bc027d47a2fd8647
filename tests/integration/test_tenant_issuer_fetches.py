"""A tenant's jwksUri must not starve federation for others nor reach inside the cluster
(issue 10, finding 3), done as tenants against a real token server.

The token server fetched every issuer's keys in one thread, one after another, with only a
per-socket timeout, and followed redirects anywhere. So a tenant's silent URI cost every
other issuer 10 s per cycle, a server that drips bytes held the thread for good (no other
tenant's rotated key was ever picked up), and a URI or redirect pointed at loopback or the
metadata address made the token server call it (blind SSRF).

The victim's issuer and the attacker's bad servers are real HTTPS servers (tests/jwks_servers)
on 127.0.0.2, which this module's token server allow-lists (`KUBEMINT_ISSUER_FETCH_ALLOW`, as
an admin would an in-cluster identity provider) so the deadline, not the address rule, is
what stops the slow ones; the "internal service" is on 127.0.0.1, which stays refused.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubemint.crypto import keys
from kubemint.crypto.jwt import Signer
from kubemint.crypto.keys import KeyMaterial
from kubemint.devcluster import ControlPlane
from tests.integration.conftest import (
    RunningOperator,
    RunningServer,
    own_operator,
    own_token_server,
)
from tests.integration.kube_helpers import condition, custom, get, wait_for, wait_ready
from tests.integration.tenants import Tenant, TenantFactory
from tests.jwks_servers import JWKSAuthority, JWKSServer, make_ca

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FETCH_DEADLINE = 2.0  # this module's KUBEMINT_ISSUER_FETCH_TIMEOUT
COOLDOWN = 1.0  # KUBEMINT_ISSUER_COOLDOWN: an unknown kid is looked up again after this
QUOTA = 3  # KUBEMINT_JWKS_URIS_PER_NAMESPACE
ALLOW = "127.0.0.2/32"  # KUBEMINT_ISSUER_FETCH_ALLOW: the test issuers' address
# What the victim may wait for its rotated key: the cooldown, one deadline for a slot, the
# fetch, and the view/scheduling slack of a busy 2-core machine. The old code: never.
PICKUP_BOUND = COOLDOWN + FETCH_DEADLINE + 8


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> JWKSAuthority:
    return make_ca(Path(tmp_path_factory.mktemp("jwks-ca")))


@pytest.fixture(scope="module")
def operator(
    cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    """This module's operator, with the same jwksUri quota and allowed network as its token
    server."""
    env = {"KUBEMINT_JWKS_URIS_PER_NAMESPACE": str(QUOTA), "KUBEMINT_ISSUER_FETCH_ALLOW": ALLOW}
    with own_operator(cluster, tmp_path_factory, extra_env=env) as running:
        yield running


@pytest.fixture(scope="module")
def token_server(
    operator: RunningOperator, ca: JWKSAuthority, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    env = {
        "SSL_CERT_FILE": str(ca.ca_file),  # the test issuers' CA
        "KUBEMINT_ISSUER_FETCH_ALLOW": ALLOW,  # the harness opts in, explicitly
        "KUBEMINT_ISSUER_FETCH_TIMEOUT": str(FETCH_DEADLINE),
        "KUBEMINT_ISSUER_COOLDOWN": str(COOLDOWN),
        "KUBEMINT_ISSUER_FETCH_WORKERS": "4",
        "KUBEMINT_JWKS_URIS_PER_NAMESPACE": str(QUOTA),
    }
    with own_token_server(operator, tmp_path_factory, extra_env=env) as running:
        yield running


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def _server(ca: JWKSAuthority, **options: Any) -> JWKSServer:
    return JWKSServer(ca, **options).start()


@pytest.fixture
def servers(ca: JWKSAuthority) -> Iterator[list[JWKSServer]]:
    """Servers a test starts; all stopped afterwards."""
    started: list[JWKSServer] = []
    yield started
    for server in started:
        server.stop()


def _jwks(key: KeyMaterial) -> dict[str, Any]:
    return {"keys": [key.public_jwk()]}


def _jwt(key: KeyMaterial, iss: str, audience: str) -> str:
    now = int(time.time())
    claims = {"iss": iss, "sub": "ci", "aud": audience, "iat": now, "exp": now + 300}
    return Signer(key).sign({**claims, "jti": uuid.uuid4().hex}, typ="JWT")


def _federated_team(tenant: Tenant, issuers: list[dict[str, Any]], **federation: Any) -> str:
    """A `none` client for the jwt-bearer grant, account `ci` federating `issuers`, and a rule
    granting `read` on the namespace's own audience; returns that audience."""
    ns = tenant.namespace
    audience = f"https://{ns}.test"
    tenant.apply(
        custom(
            "OAuth2Client",
            "gw",
            ns,
            authMethod="none",
            grantTypes=[JWT_BEARER],
            audiences=[audience],
            scopes=["read"],
        ),
        custom(
            "ServiceAccount",
            "ci",
            ns,
            clients=["gw"],
            federation={"issuers": issuers, **federation},
        ),
        custom(
            "AccessRule",
            "ci",
            ns,
            audience=audience,
            subjects=[{"kind": "ServiceAccount", "namespace": ns, "name": "ci"}],
            scopes=["read"],
        ),
    )
    return audience


def _bearer(http: httpx.Client, server: RunningServer, ns: str, jwt: str, audience: str) -> int:
    form = {"grant_type": JWT_BEARER, "client_id": f"{ns}.gw", "assertion": jwt}
    return http.post(server.token_url, data={**form, "audience": audience}).status_code


def _granted_within(
    http: httpx.Client,
    server: RunningServer,
    ns: str,
    key: KeyMaterial,
    iss: str,
    aud: str,
    t: float,
) -> float:
    """Seconds until a JWT signed with `key` gets a token (fresh JWT each try); fails after t."""
    started = time.monotonic()
    while _bearer(http, server, ns, _jwt(key, iss, server.issuer), aud) != 200:
        assert time.monotonic() - started < t, f"no token for {ns} within {t:g}s"
        time.sleep(0.2)
    return time.monotonic() - started


def _metric(http: httpx.Client, server: RunningServer, name: str, reason: str) -> float:
    for line in http.get(server.metrics_url).text.splitlines():
        if line.startswith(f'{name}{{reason="{reason}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _logged(server: RunningServer, text: str) -> bool:
    return text in server.log()


def test_a_victims_rotated_key_is_picked_up_while_an_attacker_declares_slow_uris(
    token_server: RunningServer,
    tenants: TenantFactory,
    http: httpx.Client,
    ca: JWKSAuthority,
    servers: list[JWKSServer],
) -> None:
    run = uuid.uuid4().hex[:6]
    victim, attacker = tenants(f"t{run}-ci"), tenants(f"t{run}-evil")
    old_key, new_key = keys.generate("ES256"), keys.generate("ES256")
    issuer = _server(ca, jwks=_jwks(old_key))
    silent, drip = _server(ca, behaviour="silent"), _server(ca, behaviour="drip")
    servers += [issuer, silent, drip]
    victim_iss = f"https://{victim.namespace}.ci.test"
    victim.kubectl("create", "serviceaccount", "runner", "-n", victim.namespace)
    audience = _federated_team(
        victim,
        [{"issuer": victim_iss, "jwksUri": issuer.url}],
        kubernetes=[{"serviceAccountName": "runner"}],
    )
    wait_ready(victim.cluster, "ServiceAccount", victim.namespace, "ci")
    _granted_within(http, token_server, victim.namespace, old_key, victim_iss, audience, 30)

    _federated_team(
        attacker,
        [
            {"issuer": "https://silent.test", "jwksUri": silent.url},
            {"issuer": "https://drip.test", "jwksUri": drip.url},
        ],
    )
    wait_for(lambda: silent.requests or drip.requests, "the attacker's URIs to be fetched")

    issuer.jwks = _jwks(new_key)  # the victim's issuer rotates; its JWTs name the new kid
    _granted_within(
        http, token_server, victim.namespace, new_key, victim_iss, audience, PICKUP_BOUND
    )
    # The cluster's own projected tokens keep working too (their keys have a thread of their own).
    projected = victim.kubectl(
        "create", "token", "runner", "-n", victim.namespace, "--audience", token_server.issuer
    ).stdout.strip()
    assert _bearer(http, token_server, victim.namespace, projected, audience) == 200

    # The attacker's sources were cut off at the deadline, and it shows (without a body).
    failures = "kubemint_issuer_key_fetch_failures_total"
    wait_for(lambda: _metric(http, token_server, failures, "deadline") >= 2, "deadline metric")
    for server in (silent, drip):
        assert _logged(token_server, f"fetching keys of jwks:{server.url} failed (deadline)")


def test_jwks_uris_and_redirects_into_the_cluster_are_refused(
    token_server: RunningServer,
    tenants: TenantFactory,
    http: httpx.Client,
    ca: JWKSAuthority,
    servers: list[JWKSServer],
) -> None:
    attacker = tenants(f"t{uuid.uuid4().hex[:6]}-evil")
    # An internal service on loopback (what 127.0.0.1, a node's kubelet or a sidecar would be).
    inside = _server(ca, host="127.0.0.1", jwks={"keys": []})
    hop = _server(ca, behaviour="redirect", location=f"https://127.0.0.1:{inside.port}/jwks")
    servers += [inside, hop]
    by_name = f"https://localhost:{inside.port}/jwks"
    metadata = "https://169.254.169.254/latest/meta-data/iam/security-credentials/"
    _federated_team(
        attacker,
        [
            {"issuer": "https://hop.test", "jwksUri": hop.url},
            {"issuer": "https://name.test", "jwksUri": by_name},
            {"issuer": "https://metadata.test", "jwksUri": metadata},
        ],
    )
    refusals = {hop.url: "redirect_refused", by_name: "address_refused"}

    def settled() -> bool:  # each refused (new code), or the internal service was called
        logged = all(
            _logged(token_server, f"fetching keys of jwks:{uri} failed ({reason})")
            for uri, reason in refusals.items()
        )
        return logged or inside.requests > 0

    wait_for(lambda: hop.requests, "the redirecting URI to be fetched")
    wait_for(settled, "the token server to refuse or follow the URIs")
    assert inside.requests == 0, "the token server called the internal service"
    assert hop.requests >= 1  # the redirect was asked for, and not followed
    for uri, reason in refusals.items():
        assert _logged(token_server, f"fetching keys of jwks:{uri} failed ({reason})")
    wait_for(
        lambda: _logged(token_server, "169.254.169.254 is a link-local address"),
        "the metadata address to be refused",
    )
    assert (
        _metric(http, token_server, "kubemint_issuer_key_fetch_failures_total", "address_refused")
        >= 2
    )
    # The literal address is said on the account too, naming the field.
    obj = wait_ready(
        attacker.cluster, "ServiceAccount", attacker.namespace, "ci", "False", "JwksUriRefused"
    )
    assert condition(obj)["message"].startswith("spec.federation.issuers[2].jwksUri: 169.254")


def test_jwks_uris_over_the_namespace_quota_cost_only_that_namespace(
    token_server: RunningServer,
    tenants: TenantFactory,
    http: httpx.Client,
    ca: JWKSAuthority,
    servers: list[JWKSServer],
) -> None:
    run = uuid.uuid4().hex[:6]
    victim, attacker = tenants(f"t{run}-ci"), tenants(f"t{run}-evil")
    key = keys.generate("ES256")
    spam = [_server(ca, jwks={"keys": []}) for _ in range(QUOTA + 1)]
    issuer = _server(ca, jwks=_jwks(key))
    servers += [*spam, issuer]
    _federated_team(
        attacker,
        [{"issuer": f"https://spam{i}.test", "jwksUri": s.url} for i, s in enumerate(spam)],
    )
    obj = wait_ready(
        attacker.cluster, "ServiceAccount", attacker.namespace, "ci", "False", "TooManyJwksUris"
    )
    assert condition(obj)["message"].startswith(f"spec.federation.issuers[{QUOTA}].jwksUri:")

    victim_iss = f"https://{victim.namespace}.ci.test"
    audience = _federated_team(victim, [{"issuer": victim_iss, "jwksUri": issuer.url}])
    _granted_within(http, token_server, victim.namespace, key, victim_iss, audience, 30)
    wait_for(lambda: all(s.requests for s in spam[:QUOTA]), "the admitted URIs to be fetched")
    assert spam[QUOTA].requests == 0
    assert get(attacker.cluster, "ServiceAccount", attacker.namespace, "ci") is not None
