"""Machine secrets: 256-bit random values with a recognisable prefix, and their digests.

Secret scanners find leaked kubemint secrets by the `kmint_` prefix. A machine secret has 256
bits of entropy, so a plain SHA-256 digest is enough to verify it: no salt or slow KDF is
needed (a KDF would cap the token endpoint at a few requests per second) and brute force
is hopeless. Verification compares digests in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "kmint_"
SECRET_BYTES = 32  # 256 bits


def generate_secret() -> str:
    """A new client secret or app password: `kmint_` + 43 base64url characters."""
    raw = secrets.token_bytes(SECRET_BYTES)
    return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def digest(secret: str) -> str:
    """The hex SHA-256 of a secret: what the token server keeps to verify it."""
    return hashlib.sha256(secret.encode()).hexdigest()


def verify(presented: str, digests: list[str]) -> bool:
    """Whether `presented` matches any digest; constant-time in the secret's content."""
    candidate = digest(presented)
    matched = False
    for known in digests:
        matched |= hmac.compare_digest(candidate, known)
    return matched


def fingerprint(secret: str) -> str:
    """A short, non-reversible label for logs and status (`sha256:1a2b3c4d`)."""
    return "sha256:" + digest(secret)[:8]
