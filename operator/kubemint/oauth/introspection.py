"""RFC 7662 introspection and RFC 7009 revocation decisions (no I/O).

Any of kubemint's token formats is read back: a signed JWT (verified against the server's
own keys), a JWE-wrapped one (decrypted with the encryption key, then verified) and an
opaque token (decrypted; only the server can). Revocations come from the revocation index
(kubemint.store.revocations: revoked `jti`s and clients' watermarks), and a
token whose client or account was disabled, deleted or re-created is inactive
(kubemint.oauth.provenance). What to revoke, and whether the caller may, is decided here and
only stored by the web layer.
"""

from __future__ import annotations

from typing import Any

from kubemint.crypto.jwt import ASYMMETRIC_ALGORITHMS, InvalidJWT, protected_header, verify_jwt
from kubemint.crypto.opaque import opaque_kid
from kubemint.oauth.errors import InvalidRequest, UnauthorizedClient
from kubemint.oauth.provenance import withdrawn
from kubemint.store.revocations import RevocationIndex, Target
from kubemint.store.snapshot import Snapshot

INACTIVE: dict[str, Any] = {"active": False}
SHOWN = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti")


def read_token(token: str, snapshot: Snapshot, issuer: str, now: float) -> dict[str, Any]:
    """The claims of a token this server issued, or InvalidJWT."""
    kid = opaque_kid(token)
    if kid is not None:
        key = snapshot.opaque_key(kid)
        if key is None:
            raise InvalidJWT("unknown key")
        claims = key.open(token)
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now or claims.get("iss") != issuer:
            raise InvalidJWT("token expired")
        return claims
    if token.count(".") == 4:  # JWE: decrypt with our encryption key, then verify inside
        header_kid = _jwe_kid(token)
        decrypter = snapshot.decrypter(header_kid) if header_kid else None
        if decrypter is None:
            raise InvalidJWT("unknown key")
        token = decrypter.decrypt(token)
    return verify_jwt(
        token,
        snapshot.signature_keys(),
        algorithms=ASYMMETRIC_ALGORITHMS,
        issuer=issuer,
        audience=None,
        now=now,
        require=("exp", "jti"),
    )


def introspect(
    token: str, snapshot: Snapshot, revoked: RevocationIndex, issuer: str, now: float
) -> dict[str, Any]:
    try:
        claims = read_token(token, snapshot, issuer, now)
    except InvalidJWT:
        return dict(INACTIVE)
    if revoked.revokes(claims) or withdrawn(claims, snapshot):
        return dict(INACTIVE)
    shown = {k: claims[k] for k in SHOWN if k in claims}
    return {"active": True, "token_type": "Bearer", **shown}


def revocation(
    token: str | None, client_id: str, snapshot: Snapshot, issuer: str, now: float
) -> Target | None:
    """RFC 7009 §2.1 for an authenticated client: a client revokes only its own tokens
    (UnauthorizedClient otherwise); an invalid or expired token needs nothing (None, §2.2)."""
    if not token:
        raise InvalidRequest("token is required")
    try:
        claims = read_token(token, snapshot, issuer, now)
    except InvalidJWT:
        return None
    if claims.get("client_id") != client_id:
        raise UnauthorizedClient("the token was issued to another client")
    iat = claims.get("iat")
    client = snapshot.clients.get(client_id)
    return Target(
        jti=str(claims["jti"]),
        expires=int(claims["exp"]),
        issued_at=iat if isinstance(iat, int) else None,
        client_id=client_id,
        client_uid=client.uid if client is not None else "",
    )


def _jwe_kid(token: str) -> str | None:
    try:
        kid = protected_header(token).get("kid")
    except InvalidJWT:
        return None
    return kid if isinstance(kid, str) else None
