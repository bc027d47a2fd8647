"""create_app(): the token server's routes, error rendering and lifespan, from plain data."""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kubemint.config import ServerSettings
from kubemint.oauth import json_body
from kubemint.oauth.assertions import ReplayCache, SharedClaims
from kubemint.oauth.client_auth import Caller, TokenRequest, claimed_client_id
from kubemint.oauth.errors import (
    ClaimsOverBudget,
    InvalidClient,
    InvalidRequest,
    OAuth2Error,
    ServerError,
    TemporarilyUnavailable,
    TooManyRequests,
)
from kubemint.oauth.federation import KeyLookup
from kubemint.oauth.introspection import introspect as introspect_token
from kubemint.oauth.introspection import revocation
from kubemint.oauth.ratelimit import AuthLimits, FailureLimiter
from kubemint.oauth.token_endpoint import SUPPORTED_GRANTS, Audit, TokenService, audit_error
from kubemint.policy.sandbox import Sandbox
from kubemint.server.forward_auth import forward_auth_routes
from kubemint.server.metrics import Metrics
from kubemint.server.responses import JSON, NoStoreJSON
from kubemint.server.responses import audit as write_audit
from kubemint.server.shutdown import Drain
from kubemint.server.sources import source_address
from kubemint.store.issuers import IssuerKeys
from kubemint.store.revocations import Plan, RevocationStore, RevocationUnavailable
from kubemint.store.snapshot import Snapshot
from kubemint.store.view import View

log = logging.getLogger("kubemint.server")
FORM = "application/x-www-form-urlencoded"
T = TypeVar("T")
# Form parameters of the endpoints (RFC 6749, 7009, 7523, 7662, 8693, 8707), by name.
PARAMETERS = frozenset(
    {
        "grant_type",
        "scope",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "username",
        "password",
        "assertion",
        "subject_token",
        "subject_token_type",
        "actor_token",
        "actor_token_type",
        "requested_token_type",
        "audience",
        "resource",
        "token",
        "token_type_hint",
    }
)
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt")


def create_app(
    settings: ServerSettings,
    view: View,
    *,
    keys: KeyLookup | None = None,
    revocations: RevocationStore | None = None,
    conditions: Sandbox | None = None,
    lifespan_hooks: tuple[Callable[[], None], Callable[[], None]] | None = None,
    drain: Drain | None = None,
    jtis: SharedClaims | None = None,
) -> Starlette:
    metrics = Metrics()
    service = TokenService(
        settings.issuer,
        settings.token_endpoint,
        view.snapshot,
        replay=ReplayCache(shared=jtis),  # jtis: replay refused across replicas
        limits=AuthLimits.of(settings.failures_per_client, settings.failures_per_source),
        assertion_lifetime=settings.assertion_max_lifetime,
    )
    if keys is not None:
        service.keys = keys
    # Store writes per client id per minute (FailureLimiter is a fixed-window counter).
    revocation_writes = FailureLimiter(max_failures=settings.revocation_writes_per_minute)

    def source_of(request: Request) -> str:
        peer = request.client.host if request.client else ""
        if not settings.trusted_proxies:
            return peer  # X-Forwarded-For is ignored (server.sources): no need to read it
        forwarded = request.headers.getlist("x-forwarded-for")
        return source_address(peer, forwarded, settings.trusted_proxies)

    async def token(request: Request) -> Response:
        started = time.perf_counter()
        audit = Audit(source=source_of(request))
        response: Response
        try:
            form = await _form(request, settings.max_body)
            tr = TokenRequest(form, request.headers.get("authorization"), audit.source)
            body = await authenticated(
                lambda: service.issue(tr, audit),
                claimed_client_id(tr),
                shared_jtis=jtis is not None and bool(tr.asserted_client_id()),
            )
            metrics.signed(audit.kid, time.time() + float(body.get("expires_in", 0)))
            response = NoStoreJSON(body)
        except OAuth2Error as error:
            audit_error(audit, error)
            response = _error(error)
        except Exception:
            log.exception("token request failed")
            audit.outcome, audit.error = "refused", "server_error"
            response = _error(ServerError())
        metrics.token_outcome(
            audit.grant_type if audit.grant_type in SUPPORTED_GRANTS else "other",
            audit.outcome if audit.outcome == "issued" else audit.error or "refused",
        )
        metrics.latency.observe(time.perf_counter() - started)
        write_audit("token", audit.fields())
        return response

    async def authenticated(attempt: Callable[[], T], claimed: str, shared_jtis: bool = False) -> T:
        """`attempt()`, counting failed and rate-limited authentications in the metrics.
        A request that may meet a CEL condition that has not always answered cheaply waits
        for the sandbox (kubemint.policy.sandbox) in a thread, so the event loop keeps
        serving everyone else meanwhile; others run on the loop, within the sandbox's short
        inline deadline."""
        try:
            # A client's own assertion is claimed in the shared jti store: an API write.
            if _off_loop(view.snapshot(), claimed, conditions) or shared_jtis:
                return await run_in_threadpool(attempt)
            with _inline(conditions):
                return attempt()
        except TooManyRequests as error:
            metrics.auth_failures.labels("rate_limited").inc()
            if isinstance(error, ClaimsOverBudget):
                metrics.claims_refused.labels(error.budget).inc()
            raise
        except InvalidClient:
            metrics.auth_failures.labels("invalid_client").inc()
            raise

    async def caller_of(request: Request, form: dict[str, str]) -> Caller:
        """Authenticate an introspection/revocation caller, under the token path's limits."""
        tr = TokenRequest(form, request.headers.get("authorization"), source_of(request))
        return await authenticated(
            lambda: service.authenticate(tr),
            claimed_client_id(tr),
            shared_jtis=jtis is not None and bool(tr.asserted_client_id()),
        )

    async def introspect(request: Request) -> Response:
        """RFC 7662, for authenticated clients only."""
        try:
            form = await _form(request, settings.max_body)
            await caller_of(request, form)
            token = form.get("token")
            if not token:
                raise InvalidRequest("token is required")
            body = introspect_token(
                token, view.snapshot(), view.revocations(), settings.issuer, time.time()
            )
            return JSON(body, headers={"Cache-Control": "no-store"})
        except OAuth2Error as error:
            return _error(error)

    async def revoke(request: Request) -> Response:
        """RFC 7009: a client revokes its own tokens; unknown tokens are not an error."""
        try:
            form = await _form(request, settings.max_body)
            caller = await caller_of(request, form)
            client_id = caller.client.client_id
            target = revocation(
                form.get("token"), client_id, view.snapshot(), settings.issuer, time.time()
            )
            if target is None:
                return Response(status_code=200)  # §2.2: invalid or expired: nothing to do
            if revocations is None:
                raise TemporarilyUnavailable("revocation is not available")
            now = time.time()
            what = revocations.plan(target, now)
            if what is not Plan.NOTHING:  # a write: within the client's write rate only
                wait = revocation_writes.retry_after(client_id)
                if wait is not None:
                    raise TooManyRequests("too many revocations; retry later", retry_after=wait)
                revocation_writes.failed(client_id)  # counts writes, not failures
                try:
                    await run_in_threadpool(revocations.write, target, what, now)
                except RevocationUnavailable:
                    raise TemporarilyUnavailable("revocation store unavailable; retry") from None
            write_audit("revoke", {"client_id": client_id, "jti": target.jti, "stored": what.value})
            return Response(status_code=200)
        except OAuth2Error as error:
            return _error(error)

    async def jwks(request: Request) -> Response:
        snapshot = view.snapshot()
        # A verifier caching JWKS for less than prePublish never meets an unknown kid, so
        # tell caches to keep it well under the shortest prePublish.
        shortest = min(
            (r.pre_publish.total_seconds() for r in snapshot.keys.values()), default=600.0
        )
        max_age = max(0, min(3600, int(shortest / 2)))
        return JSON(
            snapshot.jwks(),
            headers={"Cache-Control": f"public, max-age={max_age}"},
            media_type="application/jwk-set+json",
        )

    async def metadata(request: Request) -> Response:
        return JSON(
            server_metadata(settings, view), headers={"Cache-Control": "public, max-age=300"}
        )

    async def healthz(request: Request) -> Response:
        return JSON({"status": "ok"})

    async def readyz(request: Request) -> Response:
        stale = view.stale_for()
        body: dict[str, Any] = {"synced": view.synced(), "staleSeconds": round(stale, 1)}
        ready = view.synced() and stale < settings.stale_after
        body["status"] = "ready" if ready else ("stale" if view.synced() else "starting")
        failing = view.rebuild_stats().last_error
        if failing is not None:  # serving an old view: disabled clients would still work
            ready = False
            body["status"] = "rebuild_failing"
            body["reason"] = f"the view could not be rebuilt ({failing}); see the server log"
        if drain is not None and drain.active:  # leaving: no new traffic, still serving
            ready = False
            body["status"] = "shutting_down"
        return JSON(body, status_code=200 if ready else 503)

    async def prometheus(request: Request) -> Response:
        metrics.stale.set(view.stale_for())
        metrics.synced.set(1 if view.synced() else 0)
        metrics.observe_signed(time.time())
        stats = view.rebuild_stats()
        metrics.observe_view(
            stats.failures,
            stats.last_success,
            view.snapshot().skipped,
            (stats.updates, stats.work_seconds, stats.last_work),
        )
        if conditions is not None:
            metrics.observe_conditions(conditions.unavailable)
        if isinstance(keys, IssuerKeys):
            metrics.observe_issuer_keys(keys.failures, keys.states())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSON({"error": "not_found"}, status_code=404)

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return JSON({"error": "method_not_allowed"}, status_code=405)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return _error(ServerError())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if lifespan_hooks:
            lifespan_hooks[0]()
        try:
            yield
        finally:
            if lifespan_hooks:
                lifespan_hooks[1]()

    routes = [
        Route("/oauth2/token", token, methods=["POST"]),
        Route("/oauth2/introspect", introspect, methods=["POST"]),
        Route("/oauth2/revoke", revoke, methods=["POST"]),
        Route("/oauth2/jwks", jwks, methods=["GET"]),
        Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
        Route("/.well-known/openid-configuration", metadata, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *forward_auth_routes(settings.issuer, view, metrics),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: method_not_allowed, Exception: unexpected},
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    # /metrics has a listener of its own (server.metrics_listener), never the published port.
    app.state.metrics_app = Starlette(
        routes=[Route("/metrics", prometheus, methods=["GET"])],
        exception_handlers={404: not_found, 405: method_not_allowed, Exception: unexpected},
    )
    return app


def _off_loop(snapshot: Snapshot, claimed: str, conditions: Sandbox | None) -> bool:
    """Whether a request by `claimed` should wait for CEL conditions in a thread: it may meet
    one (an unnamed client may be any client) that has not always answered cheaply."""
    if conditions is None:
        return False  # conditions are evaluated in this process: a thread would not help
    if not claimed:
        return bool(snapshot.conditional_clients)
    sources = snapshot.conditional_clients.get(claimed)
    return sources is not None and not conditions.cheap(sources)


def _inline(conditions: Sandbox | None) -> AbstractContextManager[None]:
    """On the event loop: conditions met anyway get the sandbox's short inline deadline."""
    return conditions.inline() if conditions is not None else nullcontext()


def server_metadata(settings: ServerSettings, view: View) -> dict[str, Any]:
    """RFC 8414: exactly what this server supports."""
    algorithms = sorted({r.algorithm for r in view.snapshot().keys.values() if r.use == "sig"})
    return {
        "issuer": settings.issuer,
        "token_endpoint": settings.token_endpoint,
        "introspection_endpoint": settings.issuer + "/oauth2/introspect",
        "revocation_endpoint": settings.issuer + "/oauth2/revoke",
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "jwks_uri": settings.issuer + "/oauth2/jwks",
        "grant_types_supported": list(SUPPORTED_GRANTS),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": [
            "RS256",
            "PS256",
            "ES256",
            "ES384",
            "EdDSA",
            "HS256",
            "HS384",
            "HS512",
        ],
        "response_types_supported": [],
        "scopes_supported": [],
        "access_token_signing_alg_values_supported": algorithms,
    }


async def _form(request: Request, limit: int) -> dict[str, str]:
    """The urlencoded body (or a JSON object, oauth.json_body); size-limited, single-valued
    (RFC 6749 §3.2), UTF-8."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (FORM, json_body.JSON):  # JSON: an extension (oauth.json_body)
        raise InvalidRequest(f"the request body must be {FORM}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _TooLarge()
    # `request.stream()` without its async generator per request (the token path's budget).
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":  # gone, or cut off by the read deadline
            raise InvalidRequest("the request body did not arrive")  # (server.connections)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if content_type == json_body.JSON:
        return json_body.parameters(body, PARAMETERS)
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=bool(body),
            max_num_fields=64,
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("malformed request body") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            # The caller sees what it sent; the audit log only names parameters we know.
            named = f"parameter {key!r} repeated" if key in PARAMETERS else ""
            raise InvalidRequest(
                f"parameter {key[:40]!r} repeated", reason=named or "a parameter is repeated"
            )
        form[key] = value
    return form


class _TooLarge(InvalidRequest):
    status_code = 413

    def __init__(self) -> None:
        super().__init__("request body too large")


def _error(error: OAuth2Error) -> Response:
    return JSON(error.body(), status_code=error.status_code, headers=error.headers())
