"""The Prometheus metric names and labels both processes export, defined once: the operator
and the token server build their metrics from these, and the chart's alert rules and
dashboard (and their tests) refer to the same names, so a rename cannot leave a rule
querying a series nobody exports.

Label values come from kubemint's own vocabulary (kinds, condition reasons, grant types,
OAuth error codes) or name an object. Only the operator's metrics name objects
(`namespace`, `name`): its port is reachable only where the chart's NetworkPolicy allows
(the monitoring namespace), while the token server's /metrics is reachable by every tenant
and so names no client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Type = Literal["counter", "gauge", "histogram", "info"]


@dataclass(frozen=True)
class Metric:
    name: str
    """The exposed family name (a counter's samples end in `_total`, a histogram's in
    `_bucket`/`_sum`/`_count`)."""
    type: Type
    help: str
    labels: tuple[str, ...] = ()

    @property
    def samples(self) -> tuple[str, ...]:
        """The series names a scrape shows for this family (what a PromQL query names)."""
        if self.type == "counter":
            return (self.name + "_total",)
        if self.type == "histogram":
            return tuple(self.name + s for s in ("_bucket", "_sum", "_count"))
        return (self.name,)


# Label names.
KIND = "kind"
NAMESPACE = "namespace"
NAME = "name"
REASON = "reason"
KID = "kid"

OBJECT = (KIND, NAMESPACE, NAME)

# --- the operator (`kubemint operator`, its metrics port) -----------------------------------

OBJECT_READY = Metric(
    "kubemint_operator_object_ready",
    "gauge",
    "1 if the object's Ready condition is True, 0 if False or Unknown; `reason` is the"
    " condition's reason. One series per object the operator has reconciled.",
    (*OBJECT, REASON),
)
RECONCILES = Metric(
    "kubemint_operator_reconciles",
    "counter",
    "Reconciles run, by kind (successful or not).",
    (KIND,),
)
RECONCILE_ERRORS = Metric(
    "kubemint_operator_reconcile_errors",
    "counter",
    "Reconciles that raised (kopf retries them after its backoff), by kind.",
    (KIND,),
)
RECONCILE_SECONDS = Metric(
    "kubemint_operator_reconcile_duration_seconds",
    "histogram",
    "Wall time of one reconcile, by kind (waiting for a reconcile slot excluded).",
    (KIND,),
)
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

SIGNING_KEY_NEXT_ROTATION = Metric(
    "kubemint_operator_signing_key_next_rotation_timestamp_seconds",
    "gauge",
    "Unix time of the SigningKey's next scheduled rotation (status.nextRotationAt).",
    (NAMESPACE, NAME),
)
SIGNING_KEY_RETIRED_REMOVAL = Metric(
    "kubemint_operator_signing_key_retired_removal_timestamp_seconds",
    "gauge",
    "Unix time after which a retired key leaves JWKS (status.retired[].removeAfter), by kid.",
    (NAMESPACE, NAME, KID),
)
CLIENT_SECRET_NEXT_ROTATION = Metric(
    "kubemint_operator_client_secret_next_rotation_timestamp_seconds",
    "gauge",
    "Unix time of the next scheduled rotation of an OAuth2Client's secret"
    " (status.nextSecretRotationAt) or a ServiceAccount's app password"
    " (status.nextPasswordRotationAt); no series when it does not rotate.",
    OBJECT,
)
CLIENT_PREVIOUS_SECRET_EXPIRY = Metric(
    "kubemint_operator_client_previous_secret_expiry_timestamp_seconds",
    "gauge",
    "Unix time the previous client secret stops being accepted"
    " (status.previousSecretExpiresAt); no series when there is no previous secret.",
    OBJECT,
)
LEADER = Metric(
    "kubemint_operator_leader",
    "gauge",
    "1 while this replica holds the Lease and reconciles, 0 while it stands by.",
)
OPERATOR_BUILD = Metric(
    "kubemint_operator_build",
    "info",
    "The running operator's version (exposed as kubemint_operator_build_info, value 1).",
    ("version", "python"),
)

OPERATOR = (
    OBJECT_READY,
    RECONCILES,
    RECONCILE_ERRORS,
    RECONCILE_SECONDS,
    SIGNING_KEY_NEXT_ROTATION,
    SIGNING_KEY_RETIRED_REMOVAL,
    CLIENT_SECRET_NEXT_ROTATION,
    CLIENT_PREVIOUS_SECRET_EXPIRY,
    LEADER,
    OPERATOR_BUILD,
)

# --- the token server (`kubemint token-server`, /metrics) -----------------------------------

TOKENS = Metric(
    "kubemint_tokens",
    "counter",
    "Token requests by grant type and outcome (issued or the OAuth error code).",
    ("grant_type", "outcome"),
)
TOKEN_SECONDS = Metric("kubemint_token_request_seconds", "histogram", "Token endpoint latency.")
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
SIGNING_KEY_TOKEN_EXPIRY = Metric(
    "kubemint_signing_key_token_expiry_timestamp_seconds",
    "gauge",
    "Unix time the latest token this replica signed with the key `kid` expires (a kid is"
    " public in JWKS); the series goes once that time has passed. Compared with the"
    " operator's retired-key removal times: a key must stay in JWKS until then.",
    (KID,),
)
CLIENT_AUTH_FAILURES = Metric(
    "kubemint_client_auth_failures",
    "counter",
    "Failed client authentications (including rate-limited attempts).",
    (REASON,),
)
ASSERTION_CLAIMS_REFUSED = Metric(
    "kubemint_assertion_claims_refused",
    "counter",
    "Verified client assertions refused with 429 slow_down because their client (`budget`"
    " client) or all clients of its namespace (namespace) had claimed their shared jti"
    " records for the minute on this replica; the log names the client or namespace.",
    ("budget",),
)
FORWARD_AUTH = Metric(
    "kubemint_forward_auth",
    "counter",
    "Forward-auth decisions by proxy convention and outcome (allowed or why not).",
    ("proxy", "decision"),
)
VIEW_STALE = Metric(
    "kubemint_view_stale_seconds",
    "gauge",
    "Seconds since the view of the Kubernetes API last had a live watch (0 = current).",
)
VIEW_SYNCED = Metric(
    "kubemint_view_synced",
    "gauge",
    "1 once the initial list of every watched resource has been loaded.",
)
VIEW_REBUILD_FAILURES = Metric(
    "kubemint_view_rebuild_failures",
    "counter",
    "Rebuilds of the view that failed (the previous view was kept; /readyz says 503).",
)
VIEW_LAST_REBUILD = Metric(
    "kubemint_view_last_rebuild_success_timestamp_seconds",
    "gauge",
    "Unix time of the last successful rebuild of the view (0: none yet).",
)
VIEW_UPDATES = Metric(
    "kubemint_view_updates",
    "counter",
    "Successful updates of the view (each publishes a new snapshot).",
)
VIEW_UPDATE_SECONDS = Metric(
    "kubemint_view_update_work_seconds",
    "counter",
    "CPU seconds spent building the view's updates (its builder thread, off the loop).",
)
VIEW_LAST_UPDATE_SECONDS = Metric(
    "kubemint_view_last_update_work_seconds",
    "gauge",
    "CPU seconds the latest update of the view took to build.",
)
VIEW_SKIPPED = Metric(
    "kubemint_view_objects_skipped",
    "gauge",
    "Objects left out of the view because they could not be read (see their status).",
    (KIND,),
)
CONDITIONS_UNAVAILABLE = Metric(
    "kubemint_conditions_unavailable",
    "counter",
    "CEL conditions not evaluated within their budget (timeout, busy, or quarantined):"
    " the request was refused with temporarily_unavailable.",
    (REASON,),
)
ISSUER_FETCH_FAILURES = Metric(
    "kubemint_issuer_key_fetch_failures",
    "counter",
    "Failed fetches of issuers' keys (jwksUri or the cluster's), by reason; the log"
    " names the source. The last good keys are kept.",
    (REASON,),
)
ISSUER_SOURCES = Metric(
    "kubemint_issuer_key_sources",
    "gauge",
    "Issuer key sources by state: ok, failing (last fetch failed), pending (never fetched yet).",
    ("state",),
)

TOKEN_SERVER = (
    TOKENS,
    TOKEN_SECONDS,
    SIGNING_KEY_TOKEN_EXPIRY,
    CLIENT_AUTH_FAILURES,
    ASSERTION_CLAIMS_REFUSED,
    FORWARD_AUTH,
    VIEW_STALE,
    VIEW_SYNCED,
    VIEW_REBUILD_FAILURES,
    VIEW_LAST_REBUILD,
    VIEW_UPDATES,
    VIEW_UPDATE_SECONDS,
    VIEW_LAST_UPDATE_SECONDS,
    VIEW_SKIPPED,
    CONDITIONS_UNAVAILABLE,
    ISSUER_FETCH_FAILURES,
    ISSUER_SOURCES,
)
"""Besides these the token server exports prometheus_client's process_*, python_gc_* and
python_info series."""
