"""The baseline for `bench.token_bench`: the least a token endpoint can do, as a Starlette app.

POST /token/ES256 and POST /token/RS256 read the urlencoded body, parse it (`parse_qsl`, as
kubemint does), and return JSON with a freshly signed JWT over an RFC 9068-sized claim set
(fixed keys made at import: P-256 and RSA-2048). No client authentication, policy, audit log
or metrics. The benchmark runs it under uvicorn with the same options as `kubemint
token-server` (one worker, uvloop and httptools when installed, no access log), so kubemint's
throughput divided by this one's is a figure that compares across machines of different speed
and load.

    python -m uvicorn --app-dir . bench.bare_token_app:app --port 8000 --log-level warning
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ISSUER = "http://127.0.0.1"
AUDIENCE = "https://api.bench.example.com"


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


KEYS: dict[str, ECKey | RSAKey] = {
    "ES256": ECKey.import_key(_pem(ec.generate_private_key(ec.SECP256R1()))),
    "RS256": RSAKey.import_key(_pem(rsa.generate_private_key(65537, 2048))),
}
KIDS = {alg: key.thumbprint() for alg, key in KEYS.items()}
REGISTRIES = {alg: jws.JWSRegistry(algorithms=[alg]) for alg in KEYS}


async def token(request: Request) -> Response:
    alg = request.path_params["alg"]
    body = await request.body()
    form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
    if form.get("grant_type") != "client_credentials" or alg not in KEYS:
        return JSONResponse({"error": "invalid_request"}, status_code=400)
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "bench-client",
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": secrets.token_urlsafe(16),
        "client_id": "bench-client",
        "scope": "read write",
    }
    header = {"alg": alg, "kid": KIDS[alg], "typ": "at+jwt"}
    payload = json.dumps(claims, separators=(",", ":"))
    access_token = jws.serialize_compact(header, payload, KEYS[alg], registry=REGISTRIES[alg])
    return JSONResponse(
        {"access_token": access_token, "token_type": "Bearer", "expires_in": 900},
        headers={"Cache-Control": "no-store"},
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/token/{alg}", token, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)
