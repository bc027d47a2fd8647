"""Client-assertion `jti`s used, shared by every replica through the Kubernetes API.

Each replica remembers the assertions it accepted (kubemint.oauth.assertions.ReplayCache),
but behind a load balancer a replayed assertion may reach another replica. So the first use
of each assertion is also *claimed* here: a ConfigMap of the server namespace named
`kubemint-jti-<sha256(client id, jti)[:40]>`, created with one POST. The API server's
create is atomic (name uniqueness in etcd), so of two replicas accepting the same assertion
at once exactly one gets 201 and the other 409: the replay is refused wherever it lands.

The record format is defined here, once (only the token server reads or writes it):
`metadata.labels` carry `kubemint.io/role=assertion-jtis`, `kubemint.io/jti-expires`, the
10-minute slot after which the assertion can no longer be accepted (its `exp` + leeway), and
`kubemint.io/jti-namespace`, the namespace of the client (for admins finding who fills the
store; nothing trusts it); no data (the object's name is all that matters, and a `jti` is
not a credential anyway). Nothing watches these objects.

Cost: one small create per accepted assertion (`make bench-token` measures it), none for a
replay this replica already knows, and one label-selected deleteCollection per sweep for all
expired records, whichever replica wrote them (`notin` the slots that can still be live), so
garbage collection costs one request per sweep, not one per object.

Budget: the records live in the namespace every tenant shares, so claims are counted per
client (`claims_per_minute`, 60 by default) and per namespace of the client
(`namespace_claims_per_minute`, 120) on each replica, in fixed one-minute windows; a claim
over either is refused before any write (`OverBudget`: 429 for that client or namespace
alone, the assertion not burnt). The per-namespace budget is what bounds a tenant: it may
create any number of clients in its namespaces, but they share one budget. Live records:

- A record lives at most T = L + 2 x SLOT + the sweep interval after its claim, where L is
  the longest an accepted assertion is remembered (`longest_remembered`: the assertion
  lifetime, 3600 s, plus twice the 30 s leeway, since `iat` may be 30 s ahead), the two
  slots are its own GC slot and the one kept for clock skew, and sweeps run every 300 s:
  T = 3660 + 1200 + 300 = 5160 s (86 minutes) by default (plus any clock skew between
  replicas beyond a slot).
- Claims made within T seconds touch at most W = ceil(T / 60) + 1 = 87 one-minute windows.
- So live records per namespace per replica <= `namespace_claims_per_minute` x W (10,440 by
  default), per client per replica <= min(`claims_per_minute`, the namespace's) x W (5,220),
  per namespace <= replicas x 10,440 (20,880 with the chart's two replicas), and in total
  <= replicas x 10,440 x the namespaces that hold clients with JWT client authentication.
  A tenant that may create namespaces multiplies its share by their number: the cluster's
  own control over namespace creation is what bounds that.

If the API server cannot answer, the assertion is refused with temporarily_unavailable (fail
closed): accepting it could let it be replayed on another replica.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubemint.api.meta import LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY

log = logging.getLogger("kubemint.assertion_jtis")
ROLE = "assertion-jtis"
SELECTOR = f"{LABEL_ROLE}={ROLE}"
LABEL_EXPIRES = "kubemint.io/jti-expires"
LABEL_TENANT = "kubemint.io/jti-namespace"
PREFIX = "kubemint-jti-"
SLOT = 600  # seconds per GC slot
SWEEP_EVERY = 300.0  # seconds between sweeps on each replica
_API_FAILURES = (ApiException, OSError, urllib3.exceptions.HTTPError, ValueError)


class Unavailable(Exception):
    """The shared store could not tell whether an assertion was used before."""


CLIENT = "client"
NAMESPACE = "namespace"
BUDGETS = (CLIENT, NAMESPACE)  # checked in this order: the narrower budget is named first


class OverBudget(Exception):
    """This client (`budget` == CLIENT) or its namespace (NAMESPACE) has claimed its claims
    per minute on this replica; retry after `retry_after` s. `first`: the first refusal of
    that client or namespace in this minute (log it once, not once per request)."""

    def __init__(self, retry_after: int, budget: str = CLIENT, first: bool = True) -> None:
        super().__init__(f"{budget} over its budget; retry after {retry_after} s")
        self.retry_after = retry_after
        self.budget = budget
        self.first = first


def record_name(issuer_or_client: str, jti: str) -> str:
    """Named after a hash of both (a NUL cannot occur in either: it separates them), so any
    `jti` gives a valid, fixed-length object name."""
    digest = hashlib.sha256(f"{issuer_or_client}\0{jti}".encode()).hexdigest()[:40]
    return PREFIX + digest


def slot_of(expires: float) -> int:
    """The GC slot of a record needed until `expires`: the first slot starting after it."""
    return int(expires) // SLOT + 1


def live_slots(now: float, longest: float) -> list[int]:
    """Every slot a record written by now could carry (its expiry is at most `longest` s
    away): records of any other slot have expired."""
    # Slot s holds expiries before s * SLOT, so s <= now // SLOT has passed; one more is
    # kept for clock skew between replicas.
    first = int(now) // SLOT
    last = slot_of(now + longest)
    return list(range(first, last + 1))


def record_body(
    namespace: str, tenant: str, issuer_or_client: str, jti: str, expires: float
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": record_name(issuer_or_client, jti),
            "namespace": namespace,
            "labels": {
                LABEL_ROLE: ROLE,
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_EXPIRES: str(slot_of(expires)),
                LABEL_TENANT: tenant,
            },
        },
    }


def records_bound(per_minute: int, longest: float, sweep_every: float = SWEEP_EVERY) -> int:
    """The most records claims at `per_minute` (fixed one-minute windows) keep alive at once:
    a record is deleted at most `longest` + 2 slots + one sweep interval after its claim,
    and claims within that time touch that many minutes plus one."""
    lives = longest + 2 * SLOT + sweep_every
    return per_minute * (math.ceil(lives / 60) + 1)


class ClaimBudget:
    """Claims per client and per namespace, in fixed one-minute windows; thread-safe, memory
    bounded. A claim counts against both budgets, or (over either) against neither."""

    def __init__(
        self, per_client: int, per_namespace: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = {CLIENT: per_client, NAMESPACE: per_namespace}
        self.clock = clock
        # budget → key → (minute, claims counted, claims refused) of its latest window
        self._windows: dict[str, dict[str, tuple[int, int, int]]] = {b: {} for b in BUDGETS}
        self._lock = threading.Lock()

    def spend(self, tenant: str, client_key: str) -> None:
        """Count one claim for the client `client_key` of namespace `tenant`, or raise
        `OverBudget` naming the budget that is spent (nothing counted)."""
        now = self.clock()
        minute = int(now // 60)
        keys = {CLIENT: client_key, NAMESPACE: tenant}
        counted: dict[str, tuple[int, int, int]] = {}
        with self._lock:
            for budget in BUDGETS:
                windows = self._windows[budget]
                if len(windows) > 100_000:  # keep only the current minute's windows
                    self._windows[budget] = windows = {
                        k: v for k, v in windows.items() if v[0] == minute
                    }
                window, used, refused = windows.get(keys[budget], (minute, 0, 0))
                if window != minute:
                    used, refused = 0, 0
                if used >= self.limits[budget]:
                    windows[keys[budget]] = (minute, used, refused + 1)
                    retry_after = max(1, math.ceil((minute + 1) * 60 - now))
                    raise OverBudget(retry_after, budget, first=refused == 0)
                counted[budget] = (minute, used + 1, refused)
            for budget, window_after in counted.items():
                self._windows[budget][keys[budget]] = window_after


class AssertionJtis:
    """`kubemint.oauth.assertions.SharedClaims` on ConfigMaps of the server namespace.

    Each client may claim `claims_per_minute` assertions per replica, and all clients of one
    namespace together `namespace_claims_per_minute` (fixed windows): the records live in
    the namespace every tenant shares, so one tenant signing assertions as fast as it can,
    with as many clients as it likes, must not fill etcd for all. Past either: `OverBudget`
    (429). The bound on live records is in the module docstring (`records_bound`)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        longest: float,
        timeout: float = 5.0,
        claims_per_minute: int = 60,
        namespace_claims_per_minute: int = 120,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.longest = longest  # the longest an accepted assertion is remembered (s)
        self.timeout = timeout
        self.budget = ClaimBudget(claims_per_minute, namespace_claims_per_minute, clock)

    def claim(self, tenant: str, issuer_or_client: str, jti: str, expires: float) -> bool:
        try:
            self.budget.spend(tenant, issuer_or_client)
        except OverBudget as over:
            if over.first:
                _log_over_budget(over, tenant, issuer_or_client, self.budget.limits)
            raise
        body = record_body(self.namespace, tenant, issuer_or_client, jti, expires)
        create: Callable[..., Any] = self.core.create_namespaced_config_map  # a plain dict body
        try:
            answer = create(
                self.namespace, body, _preload_content=False, _request_timeout=self.timeout
            )
            # Read to the end: only then does the connection go back to the pool (else every
            # claim paid a new TLS handshake: 8 ms of CPU instead of 1.5 ms, measured).
            answer.read()
            answer.release_conn()
        except ApiException as exc:
            if exc.status == 409:  # AlreadyExists: used before, on some replica
                return False
            raise Unavailable(f"API answered {exc.status}") from None
        except _API_FAILURES as exc:
            raise Unavailable(type(exc).__name__) from None
        return True

    def sweep(self, now: float) -> None:
        """Delete every record whose slot has passed, in one request."""
        live = ",".join(str(slot) for slot in live_slots(now, self.longest))
        self.core.delete_collection_namespaced_config_map(
            self.namespace, label_selector=f"{SELECTOR},{LABEL_EXPIRES} notin ({live})"
        )

    def run_sweeper(self, halt: threading.Event, every: float = SWEEP_EVERY) -> None:
        while not halt.wait(every):
            try:
                self.sweep(time.time())
            except Exception as exc:  # the API may be away; try again next round
                log.warning("sweeping assertion jtis failed: %s", type(exc).__name__)


def _log_over_budget(
    over: OverBudget, tenant: str, issuer_or_client: str, limits: dict[str, int]
) -> None:
    """One line per client or namespace and minute: who is refused, and until when."""
    who = f"namespace {tenant}" if over.budget == NAMESPACE else f"client {issuer_or_client}"
    log.warning(
        "%s has claimed its %d client assertions this minute on this replica (the %s budget"
        " of the shared jti store); its assertions get 429 slow_down for %d s",
        who,
        limits[over.budget],
        over.budget,
        over.retry_after,
    )


def longest_remembered(max_lifetime: float, leeway: float) -> float:
    """How long after its acceptance an assertion may still need remembering: its `iat` may
    be `leeway` ahead of our clock, its `exp` `max_lifetime` after that, and it is
    remembered until `exp` + `leeway`."""
    return math.ceil(max_lifetime + 2 * leeway)
