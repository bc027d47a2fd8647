"""The File API of the calendar scenario: a resource server for https://files.example.com.

Every request except GET /healthz needs a kubemint access token for this API's audience,
verified offline by kubemint.verify (signature against the issuer's JWKS, `iss`, `aud`, expiry,
`typ: at+jwt`), and the scope its route needs:

    GET  /v1/files   file.view    list the files (metadata, without their content)
    POST /v1/files   file.create  store one: {"name": "...", "content": "...", "task": "..."}

A missing or bad token gets 401, a token without the scope 403, both with an RFC 6750
`WWW-Authenticate: Bearer` challenge. Files live in memory (run one replica).

Defence in depth: in examples/calendar/61-files-service.yaml this app sits behind a Traefik
Ingress whose forwardAuth middleware already asks the token server about every request. The
app still verifies each token itself and decides from the token's own claims, never from the
X-Auth-* headers the proxy adds: a request that reaches the pod without passing the Ingress
(from another pod straight to the Service, or when the middleware is missing or edited) gets
no further than it would at the proxy.

Settings (environment): KUBEMINT_ISSUER (required), FILES_AUDIENCE
(https://files.example.com), KUBEMINT_JWKS_URL (default <issuer>/oauth2/jwks; e.g. the token
server's in-cluster Service when the issuer URL is not reachable from the pod),
HOST (0.0.0.0), PORT (8080). Run: python files_api.py
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

DEFAULT_AUDIENCE = "https://files.example.com"
MAX_BODY = 256 * 1024
log = logging.getLogger("files-api")


class BadRequest(ValueError):
    pass


def create_app(issuer: str, audience: str = DEFAULT_AUDIENCE, jwks_url: str = "") -> Starlette:
    jwks = JWKSCache(jwks_url) if jwks_url else None
    verifier = Verifier(issuer=issuer, audience=audience, jwks=jwks)
    files: dict[str, dict[str, Any]] = {}
    ids = itertools.count(1)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @requires_scopes("file.view")
    async def list_files(request: Request) -> Response:
        listing = [{k: v for k, v in f.items() if k != "content"} for f in files.values()]
        return JSONResponse({"files": listing})

    @requires_scopes("file.create")
    async def create_file(request: Request) -> Response:
        try:
            fields = _file_fields(await _json_body(request))
        except BadRequest as exc:
            return JSONResponse(
                {"error": "invalid_request", "error_description": str(exc)}, status_code=400
            )
        file_id = f"f-{next(ids)}"
        claims: dict[str, Any] = request.state.claims
        stored = {
            "id": file_id,
            **fields,
            "size": len(fields["content"].encode()),
            "created_by": str(claims.get("client_id") or claims.get("sub", "")),
        }
        files[file_id] = stored
        log.info("file %s (%d bytes) stored for %s", file_id, stored["size"], stored["created_by"])
        return JSONResponse({k: v for k, v in stored.items() if k != "content"}, status_code=201)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/v1/files", list_files, methods=["GET"]),
            Route("/v1/files", create_file, methods=["POST"]),
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


def _file_fields(document: dict[str, Any]) -> dict[str, Any]:
    name = document.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or "/" in name:
        raise BadRequest("name must be a file name (no /) of at most 200 characters")
    content = document.get("content", "")
    if not isinstance(content, str):
        raise BadRequest("content must be a string")
    fields: dict[str, Any] = {"name": name, "content": content}
    task = document.get("task")
    if task is not None:
        if not isinstance(task, str) or len(task) > 200:
            raise BadRequest("task must be a string of at most 200 characters")
        fields["task"] = task
    return fields


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    issuer = os.environ.get("KUBEMINT_ISSUER", "")
    if not issuer:
        print("files-api: set KUBEMINT_ISSUER to the kubemint issuer URL", file=sys.stderr)
        return 1
    app = create_app(
        issuer,
        os.environ.get("FILES_AUDIENCE", DEFAULT_AUDIENCE),
        os.environ.get("KUBEMINT_JWKS_URL", ""),
    )
    host = os.environ.get("HOST", "0.0.0.0")  # noqa: S104 - a container listens on its pod IP
    uvicorn.run(app, host=host, port=int(os.environ.get("PORT", "8080")), log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
