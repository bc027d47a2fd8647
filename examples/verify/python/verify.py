"""Verify a kubemint access token (RFC 9068) with kubemint.verify. Usage: verify.py [TOKEN]"""

import json
import os
import sys

from kubemint.verify import JWKSCache, Verifier

env = os.environ
try:
    # Create once per process: it caches the keys and re-fetches them on an unknown kid.
    verifier = Verifier(
        issuer=env["KUBEMINT_ISSUER"],
        audience=env["KUBEMINT_AUDIENCE"],  # tokens minted for another API are not for us
        jwks=JWKSCache(env["KUBEMINT_JWKS_URL"]),
        # Pinned: never "none" or HS*. Narrow this to the algorithms of your SigningKeys.
        algorithms=("ES256", "ES384", "RS256", "PS256", "EdDSA"),
        leeway=30,  # seconds, on exp and nbf
    )
    token = sys.argv[1] if len(sys.argv) > 1 else env["KUBEMINT_TOKEN"]
    scope = env.get("KUBEMINT_REQUIRED_SCOPE")
    # Checks typ at+jwt, the signature, iss, aud, exp/nbf, and the required scopes; raises
    # InvalidToken, or VerificationUnavailable when the JWKS cannot be fetched.
    claims = verifier.verify(token, required_scopes=[scope] if scope else [])
except Exception as error:
    sys.exit(f"invalid token: {type(error).__name__}: {error}")
print(json.dumps({k: claims.get(k) for k in ("sub", "client_id", "scope")}))
