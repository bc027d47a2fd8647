"""Verify a kubemint access token (RFC 9068) with PyJWT alone (pip install 'pyjwt[crypto]').
Usage: verify_pyjwt.py [TOKEN]"""

import json
import os
import sys

import jwt

# Pinned: never "none" or HS*. Narrow this to the algorithms of your issuer's SigningKeys.
ALGORITHMS = ["ES256", "ES384", "RS256", "PS256", "EdDSA"]
TYPES = ("at+jwt", "application/at+jwt")

env = os.environ
try:
    # Create once per process: it caches the keys and re-fetches the set on an unknown kid.
    jwks = jwt.PyJWKClient(env["KUBEMINT_JWKS_URL"])
    token = sys.argv[1] if len(sys.argv) > 1 else env["KUBEMINT_TOKEN"]
    # An access token, not an ID token or some other JWT signed by the same keys.
    if str(jwt.get_unverified_header(token).get("typ", "")).lower() not in TYPES:
        raise jwt.InvalidTokenError("typ is not at+jwt")
    claims = jwt.decode(
        token,
        jwks.get_signing_key_from_jwt(token),
        algorithms=ALGORITHMS,
        issuer=env["KUBEMINT_ISSUER"],
        audience=env["KUBEMINT_AUDIENCE"],  # tokens minted for another API are not for us
        leeway=30,  # seconds, on exp and nbf
        options={"require": ["exp", "iat", "iss", "aud", "sub", "client_id"]},
    )
    scope = env.get("KUBEMINT_REQUIRED_SCOPE")
    if scope and scope not in str(claims.get("scope", "")).split():
        raise jwt.InvalidTokenError(f"insufficient scope: {scope} is missing")
except (jwt.PyJWTError, KeyError) as error:
    sys.exit(f"invalid token: {type(error).__name__}: {error}")
print(json.dumps({k: claims.get(k) for k in ("sub", "client_id", "scope")}))
