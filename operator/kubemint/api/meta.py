"""Group/version constants, label and annotation keys, Go-style durations, conditions."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

GROUP = "kubemint.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

KIND_SIGNING_KEY = "SigningKey"
KIND_CLIENT = "OAuth2Client"
KIND_ACCOUNT = "ServiceAccount"
KIND_ACCESS_RULE = "AccessRule"
PLURALS = {
    KIND_SIGNING_KEY: "signingkeys",
    KIND_CLIENT: "oauth2clients",
    KIND_ACCOUNT: "serviceaccounts",
    KIND_ACCESS_RULE: "accessrules",
}

# Labels on every Secret kubemint writes; the token server selects its inputs by them.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubemint"
LABEL_ROLE = "kubemint.io/role"
LABEL_OWNER_KIND = "kubemint.io/owner-kind"
LABEL_OWNER_NAMESPACE = "kubemint.io/owner-namespace"
LABEL_OWNER_NAME = "kubemint.io/owner-name"

ROLE_CLIENT_CREDENTIALS = "client-credentials"  # client namespace: what workloads mount
ROLE_CLIENT_VERIFICATION = "client-verification"  # server namespace: digests + public keys
ROLE_APP_PASSWORD = "app-password"  # noqa: S105 — a label value; account namespace: username + password
ROLE_ACCOUNT_VERIFICATION = "account-verification"  # server namespace
ROLE_SIGNING_KEYS = "signing-keys"  # server namespace: private keys

ANNOTATION_ROTATE = "kubemint.io/rotate"  # change its value to request a rotation now
# Kids (comma-separated) to take out at once after a suspected compromise (SigningKey).
ANNOTATION_WITHDRAW = "kubemint.io/withdraw"
FINALIZER = "kubemint.io/finalizer"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# The longest duration any spec field may hold (admission enforces the same bound with CEL):
# long enough for any rotation schedule, short enough that `now + duration` never overflows.
MAX_DURATION = datetime.timedelta(hours=87600)  # 10 years
MAX_DURATION_TEXT = "87600h"


class InvalidDuration(ValueError):
    pass


def parse_duration(
    text: str, field: str = "duration", maximum: datetime.timedelta = MAX_DURATION
) -> datetime.timedelta:
    """A Go-style duration as the CRDs accept it: "720h", "1h30m", "90s", "250ms".

    At most `maximum`: "99999999999999999999999999999h" matches the CRD's pattern but is no
    timedelta (OverflowError), and one such object must cost only itself, so anything out of
    range is an InvalidDuration (a ValueError) that names `field`, as bad input is."""
    if not isinstance(text, str) or not text or _DURATION_PART.sub("", text) != "":
        raise InvalidDuration(f"{field}: invalid duration {text!r}: use e.g. 720h, 15m, 90s")
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
    if not seconds <= maximum.total_seconds():  # also false for inf
        raise InvalidDuration(f"{field}: {text} is longer than {_format(maximum)}")
    return datetime.timedelta(seconds=seconds)


def _format(duration: datetime.timedelta) -> str:
    seconds = int(duration.total_seconds())
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds}s"


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes timestamps."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(datetime.UTC)


@dataclass(frozen=True, slots=True)  # slots: one or more per client in the view
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Outcome:
    """The result of a reconcile decision: Ready or not, with a reason and a message.

    The message names the field at fault and never carries a secret value.
    """

    ready: bool
    reason: str
    message: str

    @classmethod
    def ok(cls, message: str = "") -> Outcome:
        return cls(True, "Reconciled", message or "all checks passed")


def set_condition(
    conditions: list[dict[str, Any]] | None,
    kind: str,
    outcome: Outcome,
    generation: int | None,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """`conditions` with the one of type `kind` set from `outcome`, others kept as they are.

    lastTransitionTime moves only when the status flips, as Kubernetes conventions ask.
    """
    status = "True" if outcome.ready else "False"
    old = next((c for c in conditions or [] if c.get("type") == kind), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    condition = {
        "type": kind,
        "status": status,
        "reason": outcome.reason,
        "message": outcome.message,
        "lastTransitionTime": since or format_time(now),
        "observedGeneration": generation,
    }
    return (
        [c if c.get("type") != kind else condition for c in conditions or []]
        if old
        else [
            *(conditions or []),
            condition,
        ]
    )


def ready_condition(
    outcome: Outcome,
    generation: int | None,
    previous: list[dict[str, Any]] | None,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """status.conditions with Ready set from `outcome`."""
    return set_condition(previous, "Ready", outcome, generation, now)
