"""The Ingress and the HTTPRoute publish what callers outside the cluster need, and nothing else.

By default: the token and revocation endpoints, JWKS and the discovery documents. Not
introspection (resource servers in the cluster call it; outside ones are added to
`tokenServer.publishedPaths` on purpose), not forward-auth (/authz/…, for in-cluster proxies),
not /healthz or /readyz (the kubelet's), and not /metrics, which the main port does not even
serve (it has a listener of its own). Every route the token server has is placed in one of the
lists below, so a new endpoint must be placed too.
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

# Concrete requests, one per route of the main app, published by default or not.
PUBLISHED = {
    "/oauth2/token": "/oauth2/token",
    "/oauth2/revoke": "/oauth2/revoke",
    "/oauth2/jwks": "/oauth2/jwks",
    "/.well-known/oauth-authorization-server": "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration": "/.well-known/openid-configuration",
}
PRIVATE = {
    "/oauth2/introspect": "/oauth2/introspect",
    "/healthz": "/healthz",
    "/readyz": "/readyz",
    "/authz/auth-request": "/authz/auth-request",
    "/authz/forward-auth": "/authz/forward-auth",
    "/authz/ext-authz": "/authz/ext-authz",
    "/authz/ext-authz/{path:path}": "/authz/ext-authz/api/events",
}
# Paths that must never be routed to the main port, whatever it serves.
NEVER = ["/", "/metrics", "/metrics/x", "/healthz/", "/authz", "/oauth2", "/oauth2/tokens"]


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
@pytest.mark.parametrize("path", sorted({*PRIVATE.values(), *NEVER}))
def test_metrics_probes_introspection_and_forward_auth_are_not_published_by_default(
    rendered: dict[str, str], value_set: str, rules_of: Any, path: str
) -> None:
    assert not _routed(rules_of(rendered[value_set]), path)


@pytest.mark.parametrize(("value_set", "rules_of"), PUBLISHERS)
@pytest.mark.parametrize("path", sorted(PUBLISHED.values()))
def test_the_token_revocation_jwks_and_discovery_paths_are_published(
    rendered: dict[str, str], value_set: str, rules_of: Any, path: str
) -> None:
    assert _routed(rules_of(rendered[value_set]), path)


def test_the_published_paths_are_configurable(rendered: dict[str, str]) -> None:
    rules = _ingress_rules(rendered["tls-cert-manager"])
    assert rules == [
        ("Exact", "/oauth2/token"),
        ("Exact", "/oauth2/introspect"),
        ("Exact", "/oauth2/jwks"),
    ]
    assert _routed(rules, "/oauth2/introspect")
    assert not _routed(rules, "/.well-known/openid-configuration")


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
    assert paths == set(PUBLISHED) | set(PRIVATE)
    metrics = {route.path for route in app.state.metrics_app.routes if isinstance(route, Route)}
    assert metrics == {"/metrics"}  # on its own port, which no Ingress or HTTPRoute points at
