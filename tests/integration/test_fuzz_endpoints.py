"""A bounded property-based fuzz of the real token server's unauthenticated surface, over HTTP.

Hypothesis sends nasty requests to the token (RFC 6749), introspection (RFC 7662),
revocation (RFC 7009) and forward-auth endpoints: random and repeated form fields, odd
content types and bodies, unicode, garbage and crafted tokens (deeply nested JSON headers,
huge segments, mutated real tokens, opaque and JWE shapes), hostile request paths. Whatever
comes in, the answer is never a 5xx, always the endpoint's well-formed answer, and never a
hang (every request has a client timeout).

Bounded and reproducible for `make test`: a fixed number of examples per endpoint,
derandomized, no example database (see SETTINGS). The server's log must hold no unhandled
error afterwards.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.forward_auth_setup import HOST, calendar_client
from tests.integration.kube_helpers import apply, custom, secret_data, wait_for, wait_ready

SETTINGS = settings(
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    deadline=None,  # a slow example is the server's business (client timeout below)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
CLIENT_TIMEOUT = 10.0
FORM = "application/x-www-form-urlencoded"
# RFC 6749 §5.2, RFC 8693 §2.2.2, RFC 8707 §2, and RFC 6749's temporarily_unavailable/slow_down.
TOKEN_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "access_denied",
    "slow_down",
    "temporarily_unavailable",
}
REVOCATION_ERRORS = TOKEN_ERRORS | {"unsupported_token_type"}  # RFC 7009 §2.2.1
PARAMETERS = [
    "grant_type",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "assertion",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "audience",
    "resource",
    "token",
    "token_type_hint",
    "username",
    "password",
]
GRANTS = [
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "password",
    "authorization_code",
]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class Target:
    server: RunningServer
    http: httpx.Client
    audience: str
    auth: tuple[str, str]
    tokens: tuple[str, ...]  # real tokens: JWS, and opaque
    issue: Callable[[], tuple[str, ...]]  # fresh ones (the revocation test revokes its own)


@pytest.fixture(scope="module")
def target(operator: RunningOperator, token_server: RunningServer) -> Iterator[Target]:
    namespace = "fuzz"
    operator.cluster.kubectl("create", "namespace", namespace)
    calendar = calendar_client(operator, token_server, namespace)
    apply(
        operator.cluster,
        custom(
            "OAuth2Client",
            "opaque",
            namespace,
            audiences=[calendar.audience],
            scopes=["event.view"],
            tokenFormat="opaque",
        ),
        custom(
            "AccessRule",
            "opaque",
            namespace,
            audience=calendar.audience,
            scopes=["event.view"],
            subjects=[{"kind": "OAuth2Client", "name": "opaque"}],
        ),
    )
    wait_ready(operator.cluster, "OAuth2Client", namespace, "opaque")
    data = wait_for(
        lambda: secret_data(operator.cluster, namespace, "opaque-credentials"), "Secret"
    )
    with httpx.Client(
        base_url=token_server.issuer, timeout=CLIENT_TIMEOUT, trust_env=False
    ) as http:
        auth = (calendar.credentials["client-id"], calendar.credentials["client-secret"])

        def issue(credentials: tuple[str, str]) -> str | None:
            response = http.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials", "scope": "event.view"},
                auth=credentials,
            )
            return response.json()["access_token"] if response.status_code == 200 else None

        opaque_auth = (data["client-id"], data["client-secret"])
        opaque = wait_for(lambda: issue(opaque_auth), "an opaque token", timeout=20)

        def fresh() -> tuple[str, ...]:
            return tuple(t for t in (issue(auth), issue(opaque_auth)) if t)

        tokens = (calendar.token, opaque)
        yield Target(token_server, http, calendar.audience, auth, tokens, fresh)
    log = token_server.log()
    assert "unhandled error" not in log
    assert "token request failed" not in log
    assert "RecursionError" not in log


# --- strategies -----------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
ASCII = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)


@st.composite
def headers_json(draw: st.DrawFn) -> bytes:
    """A JOSE header: plausible, random, or nested far beyond any parser's comfort."""
    kind = draw(st.sampled_from(["plausible", "random", "deep", "deep-in-object", "bytes"]))
    if kind == "plausible":
        header = {
            "alg": draw(st.sampled_from(["ES256", "RS256", "HS256", "none", "dir", "EdDSA", ""])),
            "kid": draw(TEXT | st.integers() | st.none()),
            "typ": draw(st.sampled_from(["at+jwt", "JWT", "jwt", ""])),
        }
        if draw(st.booleans()):
            header.update(draw(st.dictionaries(TEXT, JSON_VALUES, max_size=3)))
        return json.dumps(header, allow_nan=True).encode()
    if kind == "random":
        return json.dumps(draw(JSON_VALUES)).encode()
    # Around CPython's recursion limit (1000) and far beyond, not only where integers cluster.
    depth = draw(st.sampled_from([33, 999, 1000, 3000, 11000]) | st.integers(30, 11000))
    if kind == "deep":
        return b"[" * depth + b"]" * draw(st.integers(0, depth))
    if kind == "deep-in-object":
        return b'{"kid":"k","alg":"ES256","x":' + b"[" * depth + b"]" * depth + b"}"
    return draw(st.binary(max_size=200))


@st.composite
def tokens(draw: st.DrawFn, real: tuple[str, ...]) -> str:
    shapes = ["jws", "jwe", "opaque", "mutated", "text", "huge", "real"]
    kind = draw(st.sampled_from(shapes) | st.just("nested"))
    if kind == "nested":  # a quarter of all tokens: a header nested past any parser's limit
        depth = draw(st.sampled_from([1000, 3000, 11000]) | st.integers(990, 11000))
        header = _b64(draw(st.sampled_from([b"[", b'{"a":'])) * depth)[:15000]
        shape = draw(st.sampled_from(["kmint_at_{}.AA.AA.AA.AA", "{}.e30.AA", "{}.AA.AA.AA.AA"]))
        return shape.format(header)
    if kind == "real":
        return draw(st.sampled_from(real))
    if kind == "text":
        return draw(TEXT)
    if kind == "huge":
        return draw(st.sampled_from(["kmint_at_", "", "eyJ"])) + "A" * draw(
            st.integers(16 * 1024 - 64, 20 * 1024)
        )
    if kind == "mutated":
        token = draw(st.sampled_from(real))
        at = draw(st.integers(0, len(token) - 1))
        return token[:at] + draw(st.sampled_from(["", "A", ".", "%", "~", "é"])) + token[at + 1 :]
    header = _b64(draw(headers_json()))[:15000]
    segments = draw(st.lists(st.binary(max_size=64).map(_b64), min_size=1, max_size=5))
    if kind == "jws":
        claims = json.dumps(draw(st.dictionaries(TEXT, JSON_VALUES, max_size=6))).encode()
        return ".".join([header, _b64(claims), segments[0]])
    if kind == "jwe":
        return ".".join([header, *(segments * 4)[:4]])
    return "kmint_at_" + ".".join([header, *(segments * 4)[:4]])


@st.composite
def forms(
    draw: st.DrawFn, real: tuple[str, ...], base: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The endpoint's well-formed request (`base`), then a few mutations: a field added
    (random or known name, possibly a repeat), dropped or given a nasty value."""
    pairs = list(base)
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["add", "add", "drop", "replace", "repeat"]))
        if action == "add" or not pairs:
            name = draw(st.sampled_from(PARAMETERS) | TEXT)
            pairs.append((name, draw(_value_for(name, real))))
        elif action == "drop":
            pairs.pop(draw(st.integers(0, len(pairs) - 1)))
        elif action == "replace":
            at = draw(st.integers(0, len(pairs) - 1))
            pairs[at] = (pairs[at][0], draw(_value_for(pairs[at][0], real)))
        else:
            pairs.append(draw(st.sampled_from(pairs)))
    return draw(st.permutations(pairs))


def _value_for(name: str, real: tuple[str, ...]) -> st.SearchStrategy[str]:
    if name in ("token", "client_assertion", "assertion", "subject_token", "actor_token"):
        return tokens(real)
    if name == "grant_type":
        return st.sampled_from(GRANTS) | TEXT
    if name == "client_assertion_type":
        return st.just(ASSERTION_TYPE) | TEXT
    return TEXT


@st.composite
def bodies(
    draw: st.DrawFn, real: tuple[str, ...], base: list[tuple[str, str]]
) -> tuple[bytes, str]:
    """(body, content type): mostly (mutated) forms, sometimes anything."""
    odd = [FORM + "; charset=utf-8", "APPLICATION/X-WWW-FORM-URLENCODED", "application/json"]
    odd += ["text/plain", "", "multipart/form-data; boundary=x", FORM + "; charset=latin-1"]
    content_type = draw(st.sampled_from([FORM] * 4) | st.sampled_from(odd) | ASCII)
    kind = draw(st.sampled_from(["form"] * 4) | st.sampled_from(["json", "binary", "percent"]))
    if kind == "form":
        return urllib.parse.urlencode(draw(forms(real, base))).encode(), content_type
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode(), content_type
    if kind == "percent":  # broken escapes, non-UTF-8 once decoded, bare separators
        parts = st.sampled_from(["%", "%ZZ", "%FF", "%C3", "&", "=", "==", "+", "token", "a"])
        return "".join(draw(st.lists(parts, max_size=20))).encode(), content_type
    return draw(st.binary(max_size=512)), content_type


def _header_value(raw: str | bytes) -> bytes:
    """What an HTTP client can send: no CR, LF, NUL or other controls; no outer whitespace."""
    data = raw.encode() if isinstance(raw, str) else raw
    cleaned = bytes(b for b in data if b >= 0x20 and b != 0x7F)
    return cleaned.strip() or b"x"


@st.composite
def authorizations(draw: st.DrawFn, good: tuple[str, str]) -> bytes | None:
    kind = draw(st.just("good") | st.sampled_from(["none", "basic", "bearer", "text", "bad-b64"]))
    if kind == "none":
        return None
    if kind == "good":
        return b"Basic " + base64.b64encode(f"{good[0]}:{good[1]}".encode())
    if kind == "basic":
        return _header_value(b"Basic " + base64.b64encode(draw(st.binary(max_size=80))))
    if kind == "bad-b64":
        return _header_value("Basic " + draw(TEXT))
    if kind == "bearer":
        return _header_value("Bearer " + draw(TEXT))
    return _header_value(draw(TEXT))


PATH_PIECES = st.sampled_from(
    [
        *("/", "a", "api", "events", "admin", ".", "..", "..;", ".;", ";", ";x=1", "%2e"),
        *("%2E%2e", "%2f", "%5c", "%00", "%23", "#", "?", "\\", "%", "%FF", "%C3%A9", "é"),
        *("//", " ", "%09", "~", "%3b", "\t", "*", "@", ":", "中"),
    ]
)
PATHS = (
    st.sampled_from(["/api/events", "/api/events/42", "/api/other", "/"])
    | st.lists(PATH_PIECES, max_size=10).map(lambda p: "/api/events/" + "".join(p))
    | TEXT
)
CLIENT_CREDENTIALS = [("grant_type", "client_credentials"), ("scope", "event.view")]


# --- well-formed answers --------------------------------------------------------------------


def _error_body(response: httpx.Response, allowed: set[str]) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert body.get("error") in allowed, body
    assert isinstance(body.get("error_description", ""), str), body
    assert set(body) <= {"error", "error_description", "error_uri"}, body
    return body


def _not_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])


def _post(target: Target, path: str, body: bytes, ctype: str, auth: bytes | None) -> httpx.Response:
    headers: list[tuple[bytes, bytes]] = []
    if ctype:
        headers.append((b"content-type", _header_value(ctype)))
    if auth is not None:
        headers.append((b"authorization", auth))
    return target.http.post(path, content=body, headers=headers)


# --- the properties -------------------------------------------------------------------------


def test_the_token_endpoint_answers_every_request_per_rfc_6749(target: Target) -> None:
    seen: Counter[int] = Counter()

    @settings(SETTINGS, max_examples=150)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        body, ctype = data.draw(bodies(target.tokens, CLIENT_CREDENTIALS))
        auth = data.draw(authorizations(target.auth))
        response = _post(target, "/oauth2/token", body, ctype, auth)
        seen[response.status_code] += 1
        _not_server_error(response)
        if response.status_code == 200:
            issued = response.json()
            assert isinstance(issued["access_token"], str)
            assert issued["token_type"] == "Bearer"
            assert response.headers["cache-control"] == "no-store"
            return
        assert response.status_code in (400, 401, 403, 413, 429), response.status_code
        error = _error_body(response, TOKEN_ERRORS)
        if response.status_code == 401:
            assert error["error"] == "invalid_client"
            assert response.headers["www-authenticate"].startswith("Basic ")

    check()
    assert {200, 400, 401} <= set(seen), seen  # the fuzz reached issuance and both refusals


def test_introspection_answers_every_request_per_rfc_7662(target: Target) -> None:
    seen: Counter[str] = Counter()

    @settings(SETTINGS, max_examples=120)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        token = data.draw(st.sampled_from(target.tokens) | tokens(target.tokens))
        body, ctype = data.draw(bodies(target.tokens, [("token", token)]))
        auth = data.draw(authorizations(target.auth))
        response = _post(target, "/oauth2/introspect", body, ctype, auth)
        _not_server_error(response)
        if response.status_code == 200:
            answer = response.json()
            seen[f"active={answer.get('active')}"] += 1
            assert isinstance(answer["active"], bool), answer
            if not answer["active"]:
                assert answer == {"active": False}  # §2.2: nothing else about a dead token
            else:
                assert answer["token_type"] == "Bearer"
                assert isinstance(answer["exp"], int)
            return
        assert response.status_code in (400, 401, 413, 429), response.status_code
        seen[_error_body(response, TOKEN_ERRORS)["error"]] += 1

    check()
    assert {"active=True", "active=False", "invalid_request"} <= set(seen), seen
    # Bad client credentials were refused: 401 invalid_client, or 429 slow_down once the token
    # test before this one has spent the claimed id's failure budget (10 a minute) in this window.
    assert {"invalid_client", "slow_down"} & set(seen), seen


def test_revocation_answers_every_request_per_rfc_7009(target: Target) -> None:
    victims = target.issue()  # its own tokens to revoke: the other tests keep theirs
    assert len(victims) == 2
    seen: Counter[int] = Counter()

    @settings(SETTINGS, max_examples=120)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        token = data.draw(st.sampled_from(victims) | tokens(victims))
        body, ctype = data.draw(bodies(victims, [("token", token)]))
        auth = data.draw(authorizations(target.auth))
        response = _post(target, "/oauth2/revoke", body, ctype, auth)
        seen[response.status_code] += 1
        _not_server_error(response)
        if response.status_code == 200:
            return  # §2.2: the body is ignored by clients
        assert response.status_code in (400, 401, 413, 429), response.status_code
        _error_body(response, REVOCATION_ERRORS)

    check()
    # Refused authentications: 401, or 429 once the client's failure budget (10/min) is spent.
    assert {200, 400} <= set(seen), seen
    assert seen.keys() & {401, 429}, seen


def test_forward_auth_answers_every_request_per_rfc_6750(target: Target) -> None:
    seen: Counter[int] = Counter()

    @settings(SETTINGS, max_examples=200)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        proxy = data.draw(st.sampled_from(["nginx-url", "nginx-uri", "traefik", "envoy"]))
        path = data.draw(PATHS)
        token = data.draw(st.sampled_from(target.tokens) | tokens(target.tokens))
        scheme = data.draw(st.just("Bearer ") | st.sampled_from(["bearer ", "Basic ", "", "B  "]))
        method = data.draw(st.just("GET") | st.sampled_from(["POST", "get", "BREW", "G ET", ""]))
        headers: list[tuple[bytes, bytes]] = [(b"authorization", _header_value(scheme + token))]
        value = _header_value(path)
        params = {"audience": data.draw(st.just(target.audience) | TEXT)}
        if proxy == "nginx-url":
            url = b"https://" + HOST.encode() + value
            headers += [(b"x-original-url", url), (b"x-original-method", _header_value(method))]
            response = target.http.get("/authz/auth-request", params=params, headers=headers)
        elif proxy == "nginx-uri":
            headers += [(b"x-original-uri", value), (b"x-original-method", _header_value(method))]
            headers.append((b"x-forwarded-host", _header_value(data.draw(st.just(HOST) | TEXT))))
            response = target.http.get("/authz/auth-request", params=params, headers=headers)
        elif proxy == "traefik":
            headers += [(b"x-forwarded-uri", value), (b"x-forwarded-method", _header_value(method))]
            headers.append((b"x-forwarded-host", HOST.encode()))
            response = target.http.get("/authz/forward-auth", params=params, headers=headers)
        else:
            quoted = urllib.parse.quote(path, safe="/%;.?=&~*@:\\")
            url = target.http.base_url.copy_with(raw_path=b"/authz/ext-authz" + quoted.encode())
            headers += [
                (b"host", HOST.encode()),
                (b"x-kubemint-audience", target.audience.encode()),
            ]
            response = target.http.request("GET", url, headers=headers)
        _not_server_error(response)
        status = response.status_code
        seen[status] += 1
        if status == 200:
            assert response.headers["x-auth-audience"] == target.audience
            assert response.headers["x-auth-client-id"]
            return
        assert status in (400, 401, 403, 404), (status, response.text[:200])
        if status == 401:
            assert response.headers["www-authenticate"].startswith("Bearer realm=")
            return
        if status == 404:  # only a prefix Envoy never sends (ext-authz + something else)
            assert proxy == "envoy"
            return
        body = response.json()
        allowed = ("invalid_request", "invalid_token", "insufficient_scope", "access_denied")
        assert body["error"] in allowed, body
        assert isinstance(body["error_description"], str)
        if status == 400:
            assert body["error"] == "invalid_request"

    check()
    assert {200, 400, 401, 403} <= set(seen), seen
