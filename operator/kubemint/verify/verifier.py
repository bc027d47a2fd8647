"""Verify a kubemint access token: signature with a pinned algorithm, RFC 9068 claims, scopes.

Every option is explicit: the issuer, the audience this resource server answers to, the
algorithms it accepts (never `none`, never HMAC), the leeway, and the scopes a call needs.

Two outcomes besides the claims: `InvalidToken` is a verdict on the token (401/403), while
`VerificationUnavailable` means it cannot be checked now because the issuer's keys cannot be
fetched (answer 503 and let the caller retry; never treat it as either verdict).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kubemint.crypto.jwt import InvalidJWT, protected_header, verify_jwt
from kubemint.verify.jwks_cache import JWKSCache, VerificationUnavailable

__all__ = ["DEFAULT_ALGORITHMS", "InvalidToken", "VerificationUnavailable", "Verifier"]

DEFAULT_ALGORITHMS = ("ES256", "ES384", "RS256", "PS256", "EdDSA")


class InvalidToken(Exception):
    """The token is not acceptable; `status` is 401 (bad token) or 403 (missing scope)."""

    def __init__(self, message: str, status: int = 401, scopes: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.scopes = tuple(scopes)


class Verifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: JWKSCache | None = None,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.jwks = jwks or JWKSCache(self.issuer + "/oauth2/jwks")
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self.clock = clock

    def verify(self, token: str, required_scopes: Iterable[str] = ()) -> dict[str, Any]:
        """The token's claims, or InvalidToken (401) / missing scopes (403); or
        VerificationUnavailable when the issuer's keys cannot be fetched right now.

        May wait (this thread) for a JWKS fetch when the token names a key not cached yet:
        in a coroutine, use `verify_async`."""
        kid = self._kid(token)
        return self._check(token, self.jwks.key(kid) if kid else None, required_scopes)

    async def verify_async(self, token: str, required_scopes: Iterable[str] = ()) -> dict[str, Any]:
        """`verify` for asyncio code: waiting for a JWKS fetch suspends only this coroutine,
        so the event loop keeps serving other requests meanwhile."""
        kid = self._kid(token)
        key = await self.jwks.key_async(kid) if kid else None
        return self._check(token, key, required_scopes)

    def _kid(self, token: str) -> str | None:
        """The key id from the header, after the checks that need no key."""
        try:
            header = protected_header(token)
        except InvalidJWT as exc:
            raise InvalidToken(str(exc)) from None
        if header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
            raise InvalidToken("not an access token (typ must be at+jwt)")
        kid = header.get("kid")
        return kid if isinstance(kid, str) else None

    def _check(
        self, token: str, key: dict[str, Any] | None, required_scopes: Iterable[str]
    ) -> dict[str, Any]:
        if key is None:
            raise InvalidToken("unknown signing key")
        try:
            claims = verify_jwt(
                token,
                [key],
                algorithms=self.algorithms,
                issuer=self.issuer,
                audience=self.audience,
                now=self.clock(),
                leeway=self.leeway,
                require=("exp", "iat", "sub", "client_id"),
                typ="at+jwt",
            )
        except InvalidJWT as exc:
            raise InvalidToken(str(exc)) from None
        granted = set(str(claims.get("scope", "")).split())
        missing = [s for s in required_scopes if s not in granted]
        if missing:
            raise InvalidToken("insufficient scope", status=403, scopes=missing)
        return claims
