"""Get a kubemint access token with authlib (client_credentials), its defaults unchanged.

Settings from the environment: KUBEMINT_TOKEN_URL, KUBEMINT_CLIENT_ID, KUBEMINT_AUTH_METHOD
(client_secret_basic, client_secret_post, client_secret_jwt or private_key_jwt),
KUBEMINT_CLIENT_SECRET (the secret methods) or KUBEMINT_PRIVATE_KEY_FILE (private_key_jwt,
a PEM private key whose public half is in the client's spec.jwks), KUBEMINT_SCOPE (optional).
Prints the token response as JSON, or one line `token request failed: …` on stderr and exits 1.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import ClientSecretJWT, PrivateKeyJWT


def main() -> int:
    token_url = os.environ["KUBEMINT_TOKEN_URL"]
    method = os.environ.get("KUBEMINT_AUTH_METHOD", "client_secret_basic")
    if method == "private_key_jwt":
        # authlib signs RS256 with exp = iat + 3600 and sends no client_id (RFC 7521 §4.2).
        credential = Path(os.environ["KUBEMINT_PRIVATE_KEY_FILE"]).read_text()
        auth: object = PrivateKeyJWT(token_url)
    else:
        credential = os.environ["KUBEMINT_CLIENT_SECRET"]
        auth = ClientSecretJWT(token_url) if method == "client_secret_jwt" else method
    session = OAuth2Session(
        os.environ["KUBEMINT_CLIENT_ID"],
        credential,
        token_endpoint_auth_method=auth,
        scope=os.environ.get("KUBEMINT_SCOPE") or None,
    )
    try:
        token = session.fetch_token(token_url, grant_type="client_credentials")
    except Exception as exc:  # authlib's OAuthError, or the network
        print(f"token request failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(dict(token)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
