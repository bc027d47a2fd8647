"""Static checks of examples/ (no cluster needed).

- The calendar scenario's ConfigMaps embed examples/calendar/apps/*.py byte for byte.
- Every workload in examples/ runs hardened (non-root, read-only root filesystem, no privilege
  escalation, no capabilities, a seccomp profile) and every image is pinned to a version.
- The forward-auth configurations in examples/forward-auth (and the calendar scenario's
  Ingresses) call the token server's real forward-auth routes with the audience where that
  route reads it, and pass on exactly kubemint's identity headers. Each proxy's check request,
  built from its configuration, is also sent to the real routes, which must understand it.
"""

from __future__ import annotations

import importlib.util
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from starlette.applications import Starlette
from starlette.testclient import TestClient

from kubemint.authz.decision import IDENTITY_HEADERS
from kubemint.server.forward_auth import AUDIENCE_HEADER, ENVOY_PREFIX, forward_auth_routes
from kubemint.server.metrics import Metrics
from kubemint.store.snapshot import Snapshot
from kubemint.store.view import StaticView

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
CALENDAR = EXAMPLES / "calendar"
APPS = CALENDAR / "apps"
FORWARD_AUTH = EXAMPLES / "forward-auth"
TOKEN_SERVER = "kubemint-token-server.kubemint-system.svc.cluster.local"
NGINX_ROUTE = "/authz/auth-request"
TRAEFIK_ROUTE = "/authz/forward-auth"
RENDER_HINT = "run python examples/calendar/apps/render.py"
KUBEMINT_IMAGE = "kubemint/kubemint"
NOT_EXAMPLES = {"node_modules", "target"}  # dependencies and build output of examples/verify

# Workloads not hardened yet, by (file, name): each is expected to fail the check (strict, so
# the mark has to go once the manifest is fixed).

Doc = dict[str, Any]


def yaml_files(root: Path = EXAMPLES) -> list[Path]:
    return sorted(p for p in root.rglob("*.yaml") if not NOT_EXAMPLES & set(p.parts))


def documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]


def objects(path: Path, kind: str) -> list[Doc]:
    return [doc for doc in documents(path) if doc.get("kind") == kind and "apiVersion" in doc]


def one(path: Path, kind: str) -> Doc:
    found = objects(path, kind)
    assert len(found) == 1, f"{path.name}: expected one {kind}, found {len(found)}"
    return found[0]


def relative(path: Path) -> str:
    return str(path.relative_to(EXAMPLES))


# -- the calendar apps embedded in ConfigMaps ---------------------------------------------------


def load_render() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calendar_render", APPS / "render.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def embedded_apps() -> Iterator[tuple[Path, str, str]]:
    """(manifest, data key, embedded code) for every .py key of every calendar ConfigMap."""
    for path in yaml_files(CALENDAR):
        for config_map in objects(path, "ConfigMap"):
            for key, value in (config_map.get("data") or {}).items():
                if key.endswith(".py"):
                    yield path, key, value


def test_every_configmap_embeds_its_app_byte_for_byte() -> None:
    seen = set()
    for path, key, code in embedded_apps():
        app = APPS / key
        assert app.is_file(), f"{path.name}: ConfigMap key {key} has no file {app}"
        assert code == app.read_text(), f"{path.name}: {key} differs from {app}: {RENDER_HINT}"
        seen.add(key)
    programs = {p.name for p in APPS.glob("*.py")} - {"render.py"}
    assert seen == programs, f"apps not embedded in any ConfigMap: {programs - seen}"


def test_the_render_script_has_nothing_to_update() -> None:
    render = load_render()
    assert set(render.TARGETS) == {p.name for p, _, _ in embedded_apps()}
    stale = render.stale(write=False)
    assert not stale, f"{[p.name for p in stale]} out of date: {RENDER_HINT}"


def test_rendering_is_exact_for_blank_lines_and_indentation() -> None:
    render = load_render()
    code = 'def f() -> None:\n\n    """x"""\n    return None\n'
    manifest = "data:\n  app.py: |\n    old\n\n---\nkind: X\n"
    rendered = render.render(manifest, {"app.py": code})
    assert rendered.endswith("\n\n---\nkind: X\n")
    assert next(yaml.safe_load_all(rendered))["data"]["app.py"] == code
    assert render.render(rendered, {"app.py": code}) == rendered
    with pytest.raises(render.RenderError):
        render.render(manifest, {"app.py": "x = 1  \n"})


# -- workloads ---------------------------------------------------------------------------------

POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def workloads() -> Iterator[Any]:
    for path in yaml_files():
        for doc in documents(path):
            if doc.get("kind") in POD_TEMPLATE_KINDS | {"Pod"} and "apiVersion" in doc:
                name = doc["metadata"]["name"]
                yield pytest.param(doc, id=f"{relative(path)}:{doc['kind']}/{name}")


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]
    return spec if workload["kind"] == "Pod" else spec["template"]["spec"]


def hardening_problems(pod: Doc) -> list[str]:
    """What is not hardened in each container (container settings override the pod's)."""
    pod_context = pod.get("securityContext") or {}
    problems = []
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        context = {**pod_context, **(container.get("securityContext") or {})}
        name = container["name"]
        if context.get("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if context.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser is 0")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if "ALL" not in (context.get("capabilities") or {}).get("drop", []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if (context.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: no RuntimeDefault (or Localhost) seccompProfile")
        if container["image"].startswith(KUBEMINT_IMAGE + ":") and (
            context.get("runAsUser"),
            context.get("runAsGroup"),
        ) != (65532, 65532):
            problems.append(f"{name}: the kubemint image runs as 65532:65532 (like the chart)")
    return problems


@pytest.mark.parametrize("workload", list(workloads()))
def test_every_workload_is_hardened(workload: Doc) -> None:
    problems = hardening_problems(pod_spec(workload))
    assert not problems, "\n".join(problems)


def test_the_hardening_check_catches_a_root_container() -> None:
    pod = {"containers": [{"name": "app", "image": "app:1.0", "securityContext": {}}]}
    assert len(hardening_problems(pod)) == 5


IMAGE_LINE = re.compile(r"""^\s*#?\s*(?:-\s*)?image:\s*["']?(?P<image>[^\s"'#,}]+)""")


def image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    _, _, last = image.rpartition("/")
    name, _, tag = last.partition(":")
    return bool(name and tag and tag != "latest")


def test_every_image_is_pinned_to_a_version() -> None:
    """Commented-out alternatives count too: readers copy them."""
    images = []
    for path in yaml_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = IMAGE_LINE.match(line)
            if match:
                images.append((f"{relative(path)}:{number}", match["image"]))
    assert images
    unpinned = [f"{where}: {image}" for where, image in images if not image_pinned(image)]
    assert not unpinned, "images without a version tag (or with :latest):\n" + "\n".join(unpinned)


def test_the_pin_check_rejects_latest_and_missing_tags() -> None:
    assert image_pinned("kubemint/kubemint:0.1.0")
    assert image_pinned("registry.example.com:5000/tasks/app@sha256:" + "0" * 64)
    assert not image_pinned("kubemint/kubemint:latest")
    assert not image_pinned("registry.example.com:5000/tasks/app")


# -- forward-auth ------------------------------------------------------------------------------


def calendar_audiences() -> dict[str, set[str]]:
    """audience -> the hosts the calendar scenario's AccessRules give spec.http entries for."""
    audiences: dict[str, set[str]] = {}
    for path in yaml_files(CALENDAR):
        for rule in objects(path, "AccessRule"):
            hosts = audiences.setdefault(rule["spec"]["audience"], set())
            for entry in rule["spec"].get("http", []):
                hosts.update(entry.get("hosts", []))
    return audiences


def token_server_url(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "http", url
    assert parts.hostname == TOKEN_SERVER, f"{url}: not the token server's Service"
    assert parts.port in (None, 80), url
    return parts


# A query parameter's value that every parser reads back unchanged: unreserved characters,
# ":" and "/" (which RFC 3986 allows unencoded in a query) and percent-escapes; never a raw
# "&", "=", "+", "#", "?" or space.
QUERY_VALUE = re.compile(r"^(?:[A-Za-z0-9._~:/-]|%[0-9A-Fa-f]{2})+$")
# ingress-nginx's annotation validation (on by default since v1.9) only lets these characters
# through in auth-url (URLWithNginxVariableRegex): no "%", so no percent-encoding there.
INGRESS_NGINX_URL = re.compile(r"^[-._~a-zA-Z0-9/:, ?&=$]*$")


def query_audience(url: str) -> str:
    """The audience query parameter: present once, URL-encoded as far as a query needs it."""
    query = urllib.parse.urlsplit(url).query
    pairs = [pair.partition("=") for pair in query.split("&") if pair]
    values = [value for name, _, value in pairs if name == "audience"]
    assert len(values) == 1, f"{url}: expected one ?audience="
    value = values[0]
    assert QUERY_VALUE.match(value), f"{url}: the audience must be URL-encoded"
    audience = urllib.parse.unquote(value)
    assert urllib.parse.parse_qs(query)["audience"] == [audience]
    assert audience in calendar_audiences(), f"{url}: {audience} has no AccessRules"
    return audience


def every_url(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from every_url(value)
    elif isinstance(node, list):
        for value in node:
            yield from every_url(value)
    elif isinstance(node, str):
        yield from re.findall(r"https?://[^\s\"',]+", node)


FORWARD_AUTH_FILES = ("ingress-nginx.yaml", "traefik.yaml", "envoy-gateway.yaml", "istio.yaml")


@pytest.fixture(scope="module")
def token_server() -> Iterator[TestClient]:
    """The token server's forward-auth routes with nothing in its view: every request without
    a token gets 401 with `Bearer realm="<audience>"`, naming the audience it read."""
    routes = forward_auth_routes("https://kubemint.test", StaticView(Snapshot()), Metrics())
    with TestClient(Starlette(routes=routes)) as client:
        yield client


def assert_understood(response: Any, audience: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == f'Bearer realm="{audience}"'


def test_the_forward_auth_directory_has_one_file_per_proxy() -> None:
    names = {p.name for p in FORWARD_AUTH.glob("*.yaml")}
    assert names >= {*FORWARD_AUTH_FILES, "envoy.yaml"}


def test_every_token_server_url_is_a_forward_auth_route() -> None:
    routes = {NGINX_ROUTE, TRAEFIK_ROUTE, ENVOY_PREFIX}
    found = 0
    sources = [FORWARD_AUTH / name for name in (*FORWARD_AUTH_FILES, "envoy.yaml")]
    for path in sources:
        for url in every_url(documents(path)):
            if TOKEN_SERVER in url:
                assert token_server_url(url).path in routes, f"{path.name}: {url}"
                found += 1
    for path in yaml_files(CALENDAR):
        for ingress in objects(path, "Ingress"):
            for url in every_url(ingress["metadata"].get("annotations", {})):
                assert token_server_url(url).path in routes, f"{path.name}: {url}"
                found += 1
    assert found >= 3


def nginx_ingresses() -> Iterator[Any]:
    paths = [FORWARD_AUTH / "ingress-nginx.yaml", CALENDAR / "60-calendar-service.yaml"]
    for path in paths:
        yield pytest.param(one(path, "Ingress"), id=relative(path))


@pytest.mark.parametrize("ingress", list(nginx_ingresses()))
def test_ingress_nginx_annotations(ingress: Doc, token_server: TestClient) -> None:
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    url = annotations[prefix + "auth-url"]
    assert INGRESS_NGINX_URL.match(url), f"ingress-nginx would refuse auth-url {url} (no %)"
    parts = token_server_url(url)
    assert parts.path == NGINX_ROUTE
    audience = query_audience(url)
    headers = annotations[prefix + "auth-response-headers"].split(",")
    assert tuple(h.strip() for h in headers) == IDENTITY_HEADERS
    assert prefix + "auth-cache-key" not in annotations, "decisions must not be cached"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    host = ingress["spec"]["rules"][0]["host"]
    assert host in calendar_audiences()[audience]
    # What ingress-nginx sends: the auth URL, X-Original-URL and X-Original-Method.
    response = token_server.get(
        f"{parts.path}?{parts.query}",
        headers={"X-Original-URL": f"https://{host}/api/events", "X-Original-Method": "GET"},
    )
    assert_understood(response, audience)


def test_both_copies_of_the_ingress_nginx_example_agree() -> None:
    standalone = one(FORWARD_AUTH / "ingress-nginx.yaml", "Ingress")
    scenario = one(CALENDAR / "60-calendar-service.yaml", "Ingress")
    assert standalone == scenario


def test_traefik_middleware(token_server: TestClient) -> None:
    middleware = one(FORWARD_AUTH / "traefik.yaml", "Middleware")
    assert middleware["apiVersion"] == "traefik.io/v1alpha1"
    forward = middleware["spec"]["forwardAuth"]
    parts = token_server_url(forward["address"])
    assert parts.path == TRAEFIK_ROUTE
    audience = query_audience(forward["address"])
    assert "%3A%2F%2F" in parts.query, "Traefik takes the audience percent-encoded"
    assert forward["trustForwardHeader"] is False, "clients could forge X-Forwarded-*"
    assert tuple(forward["authResponseHeaders"]) == IDENTITY_HEADERS
    # The File API's Ingress uses it by <namespace>-<name>@kubernetescrd.
    ingress = one(CALENDAR / "61-files-service.yaml", "Ingress")
    reference = f"{middleware['metadata']['namespace']}-{middleware['metadata']['name']}"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["traefik.ingress.kubernetes.io/router.middlewares"] == (
        f"{reference}@kubernetescrd"
    )
    assert ingress["metadata"]["namespace"] == middleware["metadata"]["namespace"]
    host = ingress["spec"]["rules"][0]["host"]
    assert host in calendar_audiences()[audience]
    # What Traefik sends: the address, X-Forwarded-Method, -Host and -Uri.
    response = token_server.get(
        f"{parts.path}?{parts.query}",
        headers={
            "X-Forwarded-Method": "POST",
            "X-Forwarded-Host": host,
            "X-Forwarded-Uri": "/v1/files",
        },
    )
    assert_understood(response, audience)


def envoy_check(client: TestClient, audience: str, host: str) -> Any:
    """What Envoy's HTTP ext_authz sends: the path after the prefix, Host, the added header."""
    return client.get(
        f"{ENVOY_PREFIX}/api/events?limit=5", headers={"Host": host, AUDIENCE_HEADER: audience}
    )


def lower(headers: list[str]) -> set[str]:
    return {h.lower() for h in headers}


def test_envoy_gateway_security_policy(token_server: TestClient) -> None:
    path = FORWARD_AUTH / "envoy-gateway.yaml"
    policy = one(path, "SecurityPolicy")["spec"]
    traffic = one(path, "ClientTrafficPolicy")["spec"]
    route = one(path, "HTTPRoute")
    ext = policy["extAuth"]
    assert ext["http"]["path"] == ENVOY_PREFIX
    assert ext["http"]["backendRefs"] == [
        {"name": "kubemint-token-server", "namespace": "kubemint-system", "port": 80}
    ]
    assert tuple(ext["http"]["headersToBackend"]) == IDENTITY_HEADERS
    assert ext.get("failOpen") is False
    assert AUDIENCE_HEADER in lower(ext["headersToExtAuth"])
    assert "x-forwarded-host" not in lower(ext["headersToExtAuth"])
    # The audience header is set for the listener the route is attached to.
    (audience_header,) = traffic["headers"]["earlyRequestHeaders"]["set"]
    assert audience_header["name"].lower() == AUDIENCE_HEADER
    audience = audience_header["value"]
    assert audience in calendar_audiences()
    (listener,) = traffic["targetRefs"]
    assert route["spec"]["parentRefs"] == [
        {"name": listener["name"], "sectionName": listener["sectionName"]}
    ]
    assert policy["targetRefs"][0]["name"] == route["metadata"]["name"]
    grant = one(path, "ReferenceGrant")["spec"]
    assert grant["to"] == [{"group": "", "kind": "Service", "name": "kubemint-token-server"}]
    host = route["spec"]["hostnames"][0]
    assert host in calendar_audiences()[audience]
    assert_understood(envoy_check(token_server, audience, host), audience)


def test_istio_extension_provider(token_server: TestClient) -> None:
    path = FORWARD_AUTH / "istio.yaml"
    (provider,) = one(path, "IstioOperator")["spec"]["meshConfig"]["extensionProviders"]
    http = provider["envoyExtAuthzHttp"]
    assert (http["service"], http["port"], http["pathPrefix"]) == (TOKEN_SERVER, 80, ENVOY_PREFIX)
    assert tuple(http["headersToUpstreamOnAllow"]) == IDENTITY_HEADERS
    assert "www-authenticate" in lower(http["headersToDownstreamOnDeny"])
    assert "x-forwarded-host" not in lower(http["includeRequestHeadersInCheck"])
    assert http.get("failOpen") is False
    added = {k.lower(): v for k, v in http["includeAdditionalHeadersInCheck"].items()}
    audience = added[AUDIENCE_HEADER]
    assert audience in calendar_audiences()
    policy = one(path, "AuthorizationPolicy")["spec"]
    assert (policy["action"], policy["provider"]["name"]) == ("CUSTOM", provider["name"])
    host = policy["rules"][0]["to"][0]["operation"]["hosts"][0]
    assert host in calendar_audiences()[audience]
    assert_understood(envoy_check(token_server, audience, host), audience)


def exact_patterns(matcher: Doc) -> list[str]:
    return [pattern["exact"] for pattern in matcher["patterns"]]


def test_plain_envoy_ext_authz_filter(token_server: TestClient) -> None:
    (bootstrap,) = documents(FORWARD_AUTH / "envoy.yaml")
    (listener,) = bootstrap["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    manager = chain["filters"][0]["typed_config"]
    filters = [f["name"] for f in manager["http_filters"]]
    assert filters == ["envoy.filters.http.ext_authz", "envoy.filters.http.router"]
    ext = manager["http_filters"][0]["typed_config"]
    assert ext.get("failure_mode_allow") is False
    assert exact_patterns(ext["allowed_headers"]) == ["authorization"]
    service = ext["http_service"]
    assert service["path_prefix"] == ENVOY_PREFIX
    (added,) = service["authorization_request"]["headers_to_add"]
    assert added["key"].lower() == AUDIENCE_HEADER
    audience = added["value"]
    assert audience in calendar_audiences()
    response = service["authorization_response"]
    assert tuple(exact_patterns(response["allowed_upstream_headers"])) == IDENTITY_HEADERS
    assert all(p.get("ignore_case") for p in response["allowed_upstream_headers"]["patterns"])
    assert "www-authenticate" in lower(exact_patterns(response["allowed_client_headers"]))
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    endpoint = clusters[service["server_uri"]["cluster"]]["load_assignment"]["endpoints"][0]
    address = endpoint["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (address["address"], address["port_value"]) == (TOKEN_SERVER, 80)
    host = manager["route_config"]["virtual_hosts"][0]["domains"][0]
    assert host in calendar_audiences()[audience]
    assert_understood(envoy_check(token_server, audience, host), audience)


def test_the_apps_default_to_the_scenario_audiences() -> None:
    audiences = calendar_audiences()
    for app in ("calendar_api.py", "files_api.py"):
        match = re.search(r'^DEFAULT_AUDIENCE = "(.+)"$', (APPS / app).read_text(), re.MULTILINE)
        assert match is not None, app
        assert match[1] in audiences, app
