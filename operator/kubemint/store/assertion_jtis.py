"""Client-assertion `jti`s used, shared by every replica through the Kubernetes API.

Each replica remembers the assertions it accepted (kubemint.oauth.assertions.ReplayCache),
but behind a load balancer a replayed assertion may reach another replica. So the first use
of each assertion is also *claimed* here: a ConfigMap of the server namespace named
`kubemint-jti-<sha256(client id, jti)[:40]>`, created with one POST. The API server's
create is atomic (name uniqueness in etcd), so of two replicas accepting the same assertion
at once exactly one gets 201 and the other 409: the replay is refused wherever it lands.

The record format is defined here, once (only the token server reads or writes it):
`metadata.labels` carry `kubemint.io/role=assertion-jtis` and `kubemint.io/jti-expires`, the
10-minute slot after which the assertion can no longer be accepted (its `exp` + leeway); no
data (the object's name is all that matters, and a `jti` is not a credential anyway). Nothing
watches these objects.

Cost: one small create per accepted assertion (`make bench-token` measures it), none for a
replay this replica already knows, and one label-selected deleteCollection per sweep for all
expired records, whichever replica wrote them (`notin` the slots that can still be live), so
garbage collection costs one request per sweep, not one per object. Live records are bounded
by (assertions accepted per second) times (the accepted lifetime + leeway).

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
PREFIX = "kubemint-jti-"
SLOT = 600  # seconds per GC slot
_API_FAILURES = (ApiException, OSError, urllib3.exceptions.HTTPError, ValueError)


class Unavailable(Exception):
    """The shared store could not tell whether an assertion was used before."""


class OverBudget(Exception):
    """This client has claimed its `claims_per_minute` on this replica; retry later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


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


def record_body(namespace: str, issuer_or_client: str, jti: str, expires: float) -> dict[str, Any]:
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
            },
        },
    }


class ClaimBudget:
    """Claims per client in fixed one-minute windows; thread-safe, memory bounded."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._windows: dict[str, tuple[int, int]] = {}  # client → (minute, claims)
        self._lock = threading.Lock()

    def spend(self, key: str) -> None:
        """Count one claim for `key`, or raise `OverBudget` (nothing counted)."""
        now = self.clock()
        minute = int(now // 60)
        with self._lock:
            if len(self._windows) > 100_000:  # keep only the current minute's windows
                self._windows = {k: v for k, v in self._windows.items() if v[0] == minute}
            window, used = self._windows.get(key, (minute, 0))
            if window != minute:
                used = 0
            if used >= self.per_minute:
                raise OverBudget(max(1, int((minute + 1) * 60 - now)))
            self._windows[key] = (minute, used + 1)


class AssertionJtis:
    """`kubemint.oauth.assertions.SharedClaims` on ConfigMaps of the server namespace.

    Each client may claim `claims_per_minute` assertions per replica (fixed windows): the
    records live in the namespace every tenant shares, so one tenant signing assertions as
    fast as it can must not fill etcd for all. Live records per client stay below
    replicas x `claims_per_minute` x (`longest` / 60). Past it: `OverBudget` (429)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        longest: float,
        timeout: float = 5.0,
        claims_per_minute: int = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.longest = longest  # the longest an accepted assertion is remembered (s)
        self.timeout = timeout
        self.budget = ClaimBudget(claims_per_minute, clock)

    def claim(self, issuer_or_client: str, jti: str, expires: float) -> bool:
        self.budget.spend(issuer_or_client)
        body = record_body(self.namespace, issuer_or_client, jti, expires)
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

    def run_sweeper(self, halt: threading.Event, every: float = 300.0) -> None:
        while not halt.wait(every):
            try:
                self.sweep(time.time())
            except Exception as exc:  # the API may be away; try again next round
                log.warning("sweeping assertion jtis failed: %s", type(exc).__name__)


def longest_remembered(max_lifetime: float, leeway: float) -> float:
    """How long after its acceptance an assertion may still need remembering."""
    return math.ceil(max_lifetime + leeway)
