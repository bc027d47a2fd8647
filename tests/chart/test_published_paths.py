"""The Ingress and the HTTPRoute publish the OAuth surface and nothing else.

/metrics (client activity), /healthz and /readyz are for the in-cluster scraper and the
kubelet; published, they would tell any outsider about the tenants. Every route the token
server has is either published or listed here as private, so a new endpoint must be placed.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.routing import Route

from kubemint.config import ServerSettings
from kubemint.server.app import create_app
from kubemint.store.snapshot import build_snapshot
from kubemint.store.view import StaticView
from tests.chart.conftest import documents

PRIVATE = {"/metrics", "/healthz", "/readyz"}
# Concrete requests a client or proxy sends, one per published route of the app.
PUBLIC_REQUESTS = {
    "/oauth2/token": "/oauth2/token",
    "/oauth2/introspect": "/oauth2/introspect",
    "/oauth2/revoke": "/oauth2/revoke",
    "/oauth2/jwks": "/oauth2/jwks",
    "/.well-known/oauth-authorization-server": "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration": "/.well-known/openid-configuration",
    "/authz/auth-request": "/authz/auth-request",
    "/authz/forward-auth": "/authz/forward-auth",
    "/authz/ext-authz": "/authz/ext-authz",
    "/authz/ext-authz/{path:path}": "/authz/ext-authz/api/events",
}


def _matches(kind: str, rule: str, path: str) -> bool:
    """Ingress `Prefix` and Gateway `PathPrefix` match whole segments; `Exact` is exact."""
    if kind == "Exact":
        return path == rule
    assert kind in ("Prefix", "PathPrefix"), kind
    rule = rule.rstrip("/")
    return rule == "" or path == rule or path.startswith(rule + "/")


def _ingress_rules(manifest: str) -> list[tuple[str, str]]:
    (ingress,) = [d for d in documents(manifest) if d["kind"] == "Ingress"]
    (rule,) = ingress["spec"]["rules"]
    return [(p["pathType"], p["path"]) for p in rule["http"]["paths"]]


def _route_rules(manifest: str) -> list[tuple[str, str]]:
    (route,) = [d for d in documents(manifest) if d["kind"] == "HTTPRoute"]
    return [
        (match["path"]["type"], match["path"]["value"])
        for rule in route["spec"]["rules"]
        for match in rule["matches"]
    ]


PUBLISHERS = [
    pytest.param("ingress-monitoring-netpol", _ingress_rules, id="Ingress"),
    pytest.param("gateway-custom-issuer", _route_rules, id="HTTPRoute"),
]


def _routed(rules: list[tuple[str, str]], path: str) -> bool:
    return any(_matches(kind, rule, path) for kind, rule in rules)


@pytest.mark.parametrize(("value_set", "rules_of"), PUBLISHERS)
@pytest.mark.parametrize("path", [*sorted(PRIVATE), "/metrics/x", "/healthz/", "/"])
def test_metrics_and_probes_are_not_published(
    rendered: dict[str, str], value_set: str, rules_of: Any, path: str
) -> None:
    assert not _routed(rules_of(rendered[value_set]), path)


@pytest.mark.parametrize(("value_set", "rules_of"), PUBLISHERS)
@pytest.mark.parametrize("path", sorted(PUBLIC_REQUESTS.values()))
def test_the_oauth_discovery_jwks_and_forward_auth_paths_are_published(
    rendered: dict[str, str], value_set: str, rules_of: Any, path: str
) -> None:
    assert _routed(rules_of(rendered[value_set]), path)


def test_every_route_of_the_token_server_is_either_published_or_private() -> None:
    snapshot = build_snapshot(
        server_namespace="kubemint-system",
        clients=[],
        accounts=[],
        rules=[],
        signing_keys=[],
        secrets=[],
    )
    app = create_app(
        ServerSettings(namespace="kubemint-system", issuer="https://kubemint.test"),
        StaticView(snapshot),
    )
    paths = {route.path for route in app.routes if isinstance(route, Route)}
    assert paths == PRIVATE | set(PUBLIC_REQUESTS)
