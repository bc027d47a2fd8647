"""The forward-auth decision for one request: allow with identity headers, or a challenge.

The proxy's configuration names the audience being protected; only the `spec.http` entries
of AccessRules for that audience (owned by the namespace that owns the audience) apply, so
a rule in another namespace can never open someone else's API. No entry matching means
deny. The token must be one this server issued (signature, issuer, expiry; opaque and
encrypted tokens too), not revoked, for the audience, still standing (its client and account
exist, are the objects it was issued to and are not disabled: kubemint.oauth.provenance),
and hold the deciding entry's scopes.

Answers follow RFC 6750 §3: 401 with `WWW-Authenticate: Bearer realm=...` (plus
`error="invalid_token"` when a token was presented), 403 `insufficient_scope` naming the
scopes, 403 `access_denied` when no entry covers the request.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubemint.api.accessrule import HttpRule
from kubemint.authz.requests import OriginalRequest
from kubemint.authz.rules import deciding
from kubemint.crypto.jwt import InvalidJWT
from kubemint.oauth.introspection import read_token
from kubemint.oauth.provenance import withdrawn
from kubemint.store.revocations import RevocationIndex
from kubemint.store.snapshot import Snapshot

SUBJECT = "X-Auth-Subject"
CLIENT_ID = "X-Auth-Client-Id"
SCOPE = "X-Auth-Scope"
AUDIENCE = "X-Auth-Audience"
IDENTITY_HEADERS = (SUBJECT, CLIENT_ID, SCOPE, AUDIENCE)
EXPIRY_LEEWAY = 30  # seconds: what read_token (verify_jwt's default) allows, kept when cached


@dataclass(frozen=True)
class Decision:
    status: int
    reason: str  # allowed, missing_token, invalid_token, insufficient_scope, no_rule
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.status == 200


class VerifiedTokens:
    """Claims of tokens already verified against the server's keys, so a client's repeated
    calls cost a dict lookup instead of a signature check. What a cached entry stands for is
    only `read_token`'s answer, which depends on the snapshot's keys alone: it is cleared
    whenever those change (the view publishes `Snapshot.keys` and `verification_keys` as
    new objects exactly then, so a removed key takes effect at once), not on other changes.
    Expiry, revocation, whether the client and account still stand (disabled, deleted,
    re-created) and audience are checked against the current snapshot on every call, cached
    or not. Bounded: oldest entries go first."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._keys: tuple[object, object] | None = None  # the key objects the entries hold for
        self._claims: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def _same_keys(self, snapshot: Snapshot) -> bool:
        held = self._keys
        return (
            held is not None and held[0] is snapshot.keys and held[1] is snapshot.verification_keys
        )

    def read(self, token: str, snapshot: Snapshot, issuer: str, now: float) -> dict[str, Any]:
        with self._lock:
            if not self._same_keys(snapshot):
                self._keys = (snapshot.keys, snapshot.verification_keys)
                self._claims = OrderedDict()
            claims = self._claims.get(token)
        if claims is None:
            claims = read_token(token, snapshot, issuer, now)  # raises InvalidJWT
            with self._lock:
                if self._same_keys(snapshot):
                    self._claims[token] = claims
                    if len(self._claims) > self.size:
                        self._claims.popitem(last=False)
        elif claims["exp"] + EXPIRY_LEEWAY <= now:  # read_token required an int exp
            raise InvalidJWT("token expired")
        return claims


def authorize(
    snapshot: Snapshot,
    *,
    issuer: str,
    audience: str,
    authorization: str | None,
    request: OriginalRequest,
    now: float,
    revoked: RevocationIndex,
    tokens: VerifiedTokens | None = None,
) -> Decision:
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return _challenge(audience, "missing_token", None, "a Bearer token is required")
    try:
        if tokens is None:
            claims = read_token(token, snapshot, issuer, now)
        else:
            claims = tokens.read(token, snapshot, issuer, now)
    except InvalidJWT as exc:
        return _challenge(audience, "invalid_token", "invalid_token", str(exc))
    if revoked.revokes(claims):
        return _challenge(audience, "invalid_token", "invalid_token", "the token was revoked")
    why = withdrawn(claims, snapshot)
    if why is not None:
        return _challenge(audience, "invalid_token", "invalid_token", why)
    if audience not in _audiences(claims):
        return _challenge(
            audience, "invalid_token", "invalid_token", f"the token is not for {audience}"
        )
    # Rules only after the token: an anonymous caller learns nothing about them.
    entries = [e for rule in snapshot.rules.get(audience, ()) for e in rule.http]
    candidates = deciding(entries, request)
    if not candidates:
        return _deny(403, "no_rule", "access_denied", f"no AccessRule http entry covers {request}")
    granted = frozenset(str(claims.get("scope", "")).split())
    if not any(entry.scopes <= granted for entry in candidates):
        needed = _fewest_missing(candidates, granted)
        return _challenge(
            audience,
            "insufficient_scope",
            "insufficient_scope",
            f"{request} needs scope {' '.join(needed)}",
            status=403,
            scope=needed,
        )
    headers = {
        SUBJECT: str(claims.get("sub", "")),
        CLIENT_ID: str(claims.get("client_id", "")),
        SCOPE: " ".join(sorted(granted)),
        AUDIENCE: audience,
    }
    return Decision(200, "allowed", headers=headers, claims=claims)


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else [str(a) for a in aud or ()]


def _fewest_missing(candidates: list[HttpRule], granted: frozenset[str]) -> list[str]:
    """The scopes of the closest candidate (fewest missing), for the challenge."""
    closest = min(candidates, key=lambda e: (len(e.scopes - granted), sorted(e.scopes)))
    return sorted(closest.scopes)


def _challenge(
    audience: str,
    reason: str,
    error: str | None,
    description: str,
    *,
    status: int = 401,
    scope: list[str] | None = None,
) -> Decision:
    value = f"Bearer realm={_quoted(audience)}"
    body: dict[str, Any] = {"error_description": description}
    if error:
        body = {
            "error": error,
            **body,
        }  # RFC 6750 §3.1: no error code when the request carried no token
        value += f", error={_quoted(error)}, error_description={_quoted(description)}"
    if scope:
        value += f", scope={_quoted(' '.join(scope))}"
    return Decision(status, reason, headers={"WWW-Authenticate": value}, body=body)


def _deny(status: int, reason: str, error: str, description: str) -> Decision:
    return Decision(status, reason, body={"error": error, "error_description": description})


def _quoted(value: str) -> str:
    """An RFC 9110 quoted-string in ASCII: control characters (none come from our own text)
    dropped, others beyond ASCII percent-encoded (a header is latin-1 at most, and the
    audience and the request's path in it may be any text)."""
    cleaned = "".join(
        c if " " <= c < "\x7f" else urllib.parse.quote(c, errors="replace")
        for c in value
        if c >= " " and c != "\x7f"
    )
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'
