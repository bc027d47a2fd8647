"""Forward-auth routes: nginx auth_request, Traefik forwardAuth and Envoy HTTP ext_authz.

Each proxy describes the original request its own way (see `kubemint.authz.requests`); the
audience being protected comes from the proxy's configuration, never from the client:
the `audience` query parameter of the auth URL for nginx and Traefik (both forward the
client's headers to the auth server, so a header could be forged), and the
`X-Kubemint-Audience` header for Envoy (whose check request carries the client's query
string, but only the headers its configuration allows or adds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubemint.authz.decision import Decision, VerifiedTokens, authorize
from kubemint.authz.requests import (
    BadRequest,
    OriginalRequest,
    from_envoy,
    from_nginx,
    from_traefik,
)
from kubemint.server.metrics import Metrics
from kubemint.server.responses import audit as write_audit
from kubemint.store.view import View

audit_log = logging.getLogger("kubemint.audit")
ENVOY_PREFIX = "/authz/ext-authz"
AUDIENCE_HEADER = "x-kubemint-audience"
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

Reader = Callable[[Request], tuple[str | None, OriginalRequest]]


def _nginx(request: Request) -> tuple[str | None, OriginalRequest]:
    return request.query_params.get("audience"), from_nginx(request.headers)


def _traefik(request: Request) -> tuple[str | None, OriginalRequest]:
    return request.query_params.get("audience"), from_traefik(request.headers)


def _envoy(request: Request) -> tuple[str | None, OriginalRequest]:
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    original = from_envoy(request.method, raw_path.decode("latin-1"), ENVOY_PREFIX, request.headers)
    return request.headers.get(AUDIENCE_HEADER), original


def forward_auth_routes(issuer: str, view: View, metrics: Metrics) -> list[Route]:
    tokens = VerifiedTokens()

    def endpoint(proxy: str, read: Reader) -> Callable[[Request], Awaitable[Response]]:
        async def decide(request: Request) -> Response:
            try:
                audience, original = read(request)
            except BadRequest as exc:
                metrics.forward_auth.labels(proxy, "bad_request").inc()
                return _json(400, {"error": "invalid_request", "error_description": str(exc)})
            if not audience:
                metrics.forward_auth.labels(proxy, "bad_request").inc()
                where = "header X-Kubemint-Audience" if proxy == "envoy" else "?audience="
                return _json(
                    400,
                    {
                        "error": "invalid_request",
                        "error_description": f"the auth URL must name the audience ({where})",
                    },
                )
            snapshot = view.snapshot()
            decision = authorize(
                snapshot,
                issuer=issuer,
                audience=audience,
                authorization=request.headers.get("authorization"),
                request=original,
                now=time.time(),
                revoked=view.revocations(),
                tokens=tokens,
            )
            metrics.forward_auth.labels(proxy, decision.reason).inc()
            known = audience if audience in snapshot.rules else "unknown"
            _audit(proxy, known, original, decision)
            if decision.allowed:
                return Response(status_code=200, headers=dict(decision.headers))
            return _json(decision.status, dict(decision.body), decision.headers)

        return decide

    envoy = endpoint("envoy", _envoy)
    return [
        Route("/authz/auth-request", endpoint("nginx", _nginx), methods=ANY_METHOD),
        Route("/authz/forward-auth", endpoint("traefik", _traefik), methods=ANY_METHOD),
        Route(ENVOY_PREFIX, envoy, methods=ANY_METHOD),
        Route(ENVOY_PREFIX + "/{path:path}", envoy, methods=ANY_METHOD),
    ]


def _json(
    status: int, body: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse(
        body, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})}
    )


def _audit(proxy: str, audience: str, original: OriginalRequest, decision: Decision) -> None:
    """One audit line per decision. The audience is one an AccessRule names (else `unknown`:
    /authz may be published, so anyone can send one), the ids come from a verified token, and
    the request line (method, host, path; never the query, where RFC 6750 lets a token
    travel) is capped like an access log's."""
    if audit_log.isEnabledFor(logging.INFO):
        fields = {
            "proxy": proxy,
            "audience": audience,
            "request": str(original)[:200],
            "decision": decision.reason,
            "status": decision.status,
            "client_id": decision.claims.get("client_id"),
            "sub": decision.claims.get("sub"),
        }
        write_audit("authz", fields)  # the same line as audit_log.info("authz %s", json.dumps(…))
