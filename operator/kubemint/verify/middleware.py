"""Starlette integration: a middleware that verifies Bearer tokens, and a scope decorator.

Failures answer RFC 6750 §3: 401 with `WWW-Authenticate: Bearer error="invalid_token"`, or
403 with `error="insufficient_scope"` and the scopes needed. When the token cannot be checked
at all (the issuer's keys cannot be fetched), the answer is 503 with `Retry-After` and
`{"error": "temporarily_unavailable"}`, and no challenge: the token was not found wanting.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from kubemint.verify.verifier import InvalidToken, VerificationUnavailable, Verifier


def challenge(error: InvalidToken, realm: str = "kubemint") -> Response:
    code = "insufficient_scope" if error.status == 403 else "invalid_token"
    value = f'Bearer realm="{realm}", error="{code}", error_description="{error.message}"'
    if error.scopes:
        value += f', scope="{" ".join(error.scopes)}"'
    return JSONResponse(
        {"error": code, "error_description": error.message},
        status_code=error.status,
        headers={"WWW-Authenticate": value},
    )


def unavailable(error: VerificationUnavailable) -> Response:
    """503 for a token that cannot be verified now; says nothing about the token."""
    return JSONResponse(
        {"error": "temporarily_unavailable", "error_description": error.message},
        status_code=503,
        headers={"Retry-After": str(error.retry_after)},
    )


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("a Bearer token is required")
    return token.strip()


class BearerAuthMiddleware:
    """Verifies the Bearer token of every HTTP request (except `exempt` paths) and puts its
    claims in `request.state.claims`.

    A token whose key is not cached waits for the JWKS fetch without blocking the event
    loop (asyncio: uvicorn, hypercorn's asyncio worker), for at most the cache's `timeout`;
    every other request, exempt or with a cached key, is answered meanwhile."""

    def __init__(self, app: ASGIApp, verifier: Verifier, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.verifier = verifier
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            claims = await self.verifier.verify_async(
                bearer_token(request.headers.get("authorization"))
            )
        except InvalidToken as error:
            await challenge(error)(scope, receive, send)
            return
        except VerificationUnavailable as error:
            await unavailable(error)(scope, receive, send)
            return
        scope.setdefault("state", {})["claims"] = claims
        await self.app(scope, receive, send)


Endpoint = Callable[[Request], Awaitable[Response]]


def requires_scopes(*scopes: str) -> Callable[[Endpoint], Endpoint]:
    """Endpoint decorator: 403 unless the verified token (from the middleware) has `scopes`."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def wrapper(request: Request) -> Response:
            claims: dict[str, Any] = getattr(request.state, "claims", {})
            granted = set(str(claims.get("scope", "")).split())
            missing = [s for s in scopes if s not in granted]
            if missing:
                return challenge(InvalidToken("insufficient scope", 403, missing))
            return await endpoint(request)

        return wrapper

    return decorate
