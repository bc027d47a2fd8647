"""JWT client assertions for client authentication (RFC 7523 §2.2 and §3), and `jti` replay.

`private_key_jwt` assertions are verified with the client's public JWKS, `client_secret_jwt`
ones with its secret (OpenID Connect Core §9). Either way the assertion must be issued by the
client about itself (`iss` == `sub` == client_id), be meant for us (`aud` holds the token
endpoint URL or the issuer identifier), live at most `max_lifetime` (one hour by default,
authlib's default and the bound common providers document), and carry a `jti` not seen
before within its lifetime.

Replay: each replica remembers the `jti`s it accepted (`ReplayCache`, bounded); with a
`SharedClaims` (kubemint.store.assertion_jtis) the first use is also claimed in a store all
replicas share, so an assertion accepted by one replica is refused by every other. Each claim
names the client's namespace (its tenant): the shared store is budgeted per client and per
namespace, so no tenant fills it for the others however many clients it makes.

Failures raise `InvalidClient` with "client assertion rejected: <reason>", where the reason
is one of the stable messages of `kubemint.crypto.jwt`; nothing from the assertion is echoed.
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from kubemint.crypto.jwt import (
    ASYMMETRIC_ALGORITHMS,
    HMAC_ALGORITHMS,
    InvalidJWT,
    VerificationKeys,
    decode_unverified,
    verify_hmac_jwt,
    verify_jwt,
)
from kubemint.oauth.errors import ClaimsOverBudget, InvalidClient, TemporarilyUnavailable
from kubemint.store.assertion_jtis import NAMESPACE, OverBudget, Unavailable

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_MAX_LIFETIME = 3600.0
LEEWAY = 30.0  # seconds of clock skew allowed on `exp`/`iat`
MAX_JTI_LENGTH = 256
_REQUIRED = ("iss", "sub", "aud", "exp", "jti")


class SharedClaims(Protocol):
    """A store every replica shares (kubemint.store.assertion_jtis): `claim` records
    (issuer/client, jti) until `expires` atomically and answers whether this was the first
    use. `tenant` is the namespace of the client or issuer, which the store budgets. Raises
    its `Unavailable` when it cannot tell (the assertion is then refused), and `OverBudget`
    when the client or its namespace has claimed too many this minute."""

    def claim(self, tenant: str, issuer_or_client: str, jti: str, expires: float) -> bool: ...


class ReplayCache:
    """Remembers each (client, `jti`) until its expiry, to refuse an assertion used twice.

    In memory and per replica, holding at most `max_entries` (when full, the oldest entry
    is dropped first); thread-safe. Alone it catches replays against this replica only.
    With `shared`, a `jti` new to this replica is also claimed there, so a replay against
    another replica (or one this cache dropped) is caught too; a local hit never asks it.
    """

    def __init__(self, max_entries: int = 100_000, shared: SharedClaims | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._max = max_entries
        self.shared = shared
        self._entries: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._expiries: list[tuple[float, tuple[str, str]]] = []  # heap, may hold stale items
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Entries held (not `__len__`: an empty cache must not be falsy)."""
        return len(self._entries)

    def seen(self, issuer_or_client: str, jti: str, exp: float, now: float, *, tenant: str) -> bool:
        """Whether `jti` was already recorded for this issuer/client (of namespace `tenant`)
        and has not expired (here, or in the shared store); records it until `exp` otherwise.
        Check and record happen atomically. Raises `Unavailable` when the shared store cannot
        answer, `OverBudget` when its budget for the client or namespace is spent."""
        if self._seen_locally(issuer_or_client, jti, exp, now):
            return True
        if self.shared is None or exp <= now:
            return False
        try:
            return not self.shared.claim(tenant, issuer_or_client, jti, exp)
        except (Unavailable, OverBudget):
            with self._lock:  # not accepted: the client's retry must not look like a replay
                self._entries.pop((issuer_or_client, jti), None)
            raise

    def _seen_locally(self, issuer_or_client: str, jti: str, exp: float, now: float) -> bool:
        key = (issuer_or_client, jti)
        with self._lock:
            self._drop_expired(now)
            if key in self._entries:
                return True
            if exp <= now:
                return False  # already expired: nothing left to protect
            self._entries[key] = exp
            heapq.heappush(self._expiries, (exp, key))
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
            if len(self._expiries) > 2 * self._max:
                self._expiries = [(e, k) for k, e in self._entries.items()]
                heapq.heapify(self._expiries)
            return False

    def _drop_expired(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            expiry, key = heapq.heappop(self._expiries)
            if self._entries.get(key) == expiry:
                del self._entries[key]


def peek_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of an assertion before verification, for routing only (e.g. finding
    the client by `iss`). Size-limited; raises `InvalidJWT` on anything that is not a JWS."""
    return decode_unverified(token)


def verify_client_assertion(
    assertion: str,
    *,
    client_id: str,
    tenant: str,
    keys: VerificationKeys | None = None,
    hmac_secrets: Sequence[str | bytes] | None = None,
    token_endpoint: str,
    issuer: str,
    replay: ReplayCache,
    now: float,
    max_lifetime: float = DEFAULT_MAX_LIFETIME,
    leeway: float = LEEWAY,
    algorithms: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The claims of a valid client assertion for `client_id` (of namespace `tenant`);
    else `InvalidClient`, or `ClaimsOverBudget` when the shared store's budget of the client
    or its namespace is spent.

    Pass the client's public `keys` (private_key_jwt) or its `hmac_secrets`
    (client_secret_jwt), not both.
    """
    if (keys is None) == (hmac_secrets is None):
        raise ValueError("pass exactly one of keys and hmac_secrets")
    options: dict[str, Any] = {
        "issuer": client_id,
        "audience": [token_endpoint, issuer],
        "now": now,
        "leeway": leeway,
        "require": _REQUIRED,
        "max_lifetime": max_lifetime,
    }
    try:
        if keys is not None:
            claims = verify_jwt(
                assertion, keys, algorithms=algorithms or ASYMMETRIC_ALGORITHMS, **options
            )
        else:
            assert hmac_secrets is not None
            claims = verify_hmac_jwt(
                assertion, hmac_secrets, algorithms=algorithms or HMAC_ALGORITHMS, **options
            )
    except InvalidJWT as error:
        raise _rejected(str(error)) from None

    if claims["sub"] != client_id:
        raise _rejected("subject does not match client")
    jti = claims["jti"]
    if len(jti) > MAX_JTI_LENGTH:
        raise _rejected("jti too long")
    # Accepted until exp + leeway, so remembered that long.
    try:
        if replay.seen(client_id, jti, claims["exp"] + leeway, now, tenant=tenant):
            raise _rejected("jti already used")
    except OverBudget as over:
        raise _over_budget(over) from None
    except Unavailable:
        raise TemporarilyUnavailable(
            "client assertions cannot be checked for replay right now; retry shortly",
            retry_after=1,
            reason="the shared jti store is unavailable",
        ) from None
    return claims


def _over_budget(over: OverBudget) -> ClaimsOverBudget:
    if over.budget == NAMESPACE:
        description = "too many client assertions from this client's namespace; retry later"
        reason = "the namespace's shared jti claims per minute are spent"
    else:
        description = "too many client assertions; retry later"
        reason = "the client's shared jti claims per minute are spent"
    return ClaimsOverBudget(
        description, retry_after=over.retry_after, budget=over.budget, reason=reason
    )


def _rejected(reason: str) -> InvalidClient:
    return InvalidClient(f"client assertion rejected: {reason}")
