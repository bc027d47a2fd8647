"""The Calendar API of the calendar scenario: a resource server for https://calendar.example.com.

Every request except GET /healthz needs a kubemint access token for this API's audience,
verified offline by kubemint.verify (signature against the issuer's JWKS, `iss`, `aud`, expiry,
`typ: at+jwt`), and the scope its route needs:

    GET  /api/events        event.view    list the events
    POST /api/events        event.create  create one: {"title": "...", "start": "...", ...}
    PUT  /api/events/{id}   event.update  replace its title, start, end and attachments

A missing or bad token gets 401, a token without the scope 403, both with an RFC 6750
`WWW-Authenticate: Bearer` challenge. Events live in memory (run one replica).

Defence in depth: in examples/calendar/60-calendar-service.yaml this app sits behind an
ingress-nginx Ingress whose forward-auth (auth-url) already asks the token server about every
request. The app still verifies each token itself and decides from the token's own claims,
never from the X-Auth-* headers the proxy adds: a request that reaches the pod without passing
the Ingress (from another pod straight to the Service, through a second Ingress without the
annotations, or after someone edits them) gets no further than it would at the proxy.

Settings (environment): KUBEMINT_ISSUER (required), CALENDAR_AUDIENCE
(https://calendar.example.com), KUBEMINT_JWKS_URL (default <issuer>/oauth2/jwks; e.g. the
token server's in-cluster Service when the issuer URL is not reachable from the pod),
HOST (0.0.0.0), PORT (8080). Run: python calendar_api.py
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubemint.verify import JWKSCache, Verifier
from kubemint.verify.middleware import BearerAuthMiddleware, requires_scopes

DEFAULT_AUDIENCE = "https://calendar.example.com"
MAX_BODY = 64 * 1024
TEXT_FIELDS = ("title", "start", "end")
log = logging.getLogger("calendar-api")


class BadRequest(ValueError):
    pass


def create_app(issuer: str, audience: str = DEFAULT_AUDIENCE, jwks_url: str = "") -> Starlette:
    jwks = JWKSCache(jwks_url) if jwks_url else None
    verifier = Verifier(issuer=issuer, audience=audience, jwks=jwks)
    events: dict[str, dict[str, Any]] = {}
    ids = itertools.count(1)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @requires_scopes("event.view")
    async def list_events(request: Request) -> Response:
        return JSONResponse({"events": list(events.values())})

    @requires_scopes("event.create")
    async def create_event(request: Request) -> Response:
        try:
            fields = _event_fields(await _json_body(request), required=("title", "start"))
        except BadRequest as exc:
            return _invalid(str(exc))
        event_id = str(next(ids))
        event = {"id": event_id, **fields, "created_by": _caller(request)}
        events[event_id] = event
        log.info("event %s created by %s", event_id, event["created_by"])
        return JSONResponse(event, status_code=201)

    @requires_scopes("event.update")
    async def update_event(request: Request) -> Response:
        event_id = str(request.path_params["id"])
        if event_id not in events:
            return JSONResponse({"error": "not_found"}, status_code=404)
        try:
            fields = _event_fields(await _json_body(request), required=())
        except BadRequest as exc:
            return _invalid(str(exc))
        event = {**events[event_id], **fields, "updated_by": _caller(request)}
        events[event_id] = event
        log.info("event %s updated by %s", event_id, event["updated_by"])
        return JSONResponse(event)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/api/events", list_events, methods=["GET"]),
            Route("/api/events", create_event, methods=["POST"]),
            Route("/api/events/{id}", update_event, methods=["PUT"]),
        ],
        middleware=[Middleware(BearerAuthMiddleware, verifier=verifier, exempt=("/healthz",))],
    )


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise BadRequest(f"the body is larger than {MAX_BODY} bytes")
    try:
        document = json.loads(body)
    except ValueError:
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object")
    return document


def _event_fields(document: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        value = document.get(name)
        if value is None:
            if name in required:
                raise BadRequest(f"{name} is required")
            continue
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise BadRequest(f"{name} must be a non-empty string of at most 200 characters")
        fields[name] = value
    attachments = document.get("attachments")
    if attachments is not None:
        if not isinstance(attachments, list) or not all(
            isinstance(a, str) and 0 < len(a) <= 200 for a in attachments
        ):
            raise BadRequest("attachments must be a list of file ids")
        fields["attachments"] = attachments
    return fields


def _caller(request: Request) -> str:
    """The verified token's client (the BearerAuthMiddleware put its claims here)."""
    claims: dict[str, Any] = request.state.claims
    return str(claims.get("client_id") or claims.get("sub", ""))


def _invalid(description: str) -> Response:
    return JSONResponse(
        {"error": "invalid_request", "error_description": description}, status_code=400
    )


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    issuer = os.environ.get("KUBEMINT_ISSUER", "")
    if not issuer:
        print("calendar-api: set KUBEMINT_ISSUER to the kubemint issuer URL", file=sys.stderr)
        return 1
    app = create_app(
        issuer,
        os.environ.get("CALENDAR_AUDIENCE", DEFAULT_AUDIENCE),
        os.environ.get("KUBEMINT_JWKS_URL", ""),
    )
    host = os.environ.get("HOST", "0.0.0.0")  # noqa: S104 - a container listens on its pod IP
    uvicorn.run(app, host=host, port=int(os.environ.get("PORT", "8080")), log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
