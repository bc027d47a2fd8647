"""Resource-server side: verify kubemint access tokens offline against the issuer's JWKS."""

from kubemint.verify.jwks_cache import Fetched, JWKSCache, VerificationUnavailable
from kubemint.verify.verifier import InvalidToken, Verifier

__all__ = ["Fetched", "InvalidToken", "JWKSCache", "VerificationUnavailable", "Verifier"]
