"""SigningKey as Python reads it: every spec field, parsed once, with the CRD's defaults."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubemint.api.meta import ANNOTATION_WITHDRAW, parse_duration
from kubemint.crypto import keys

DEFAULT_ALGORITHM = "ES256"
DEFAULT_EVERY = "720h"
DEFAULT_PRE_PUBLISH = "24h"
DEFAULT_RETAIN_AFTER = "24h"

# Bounds on the schedule, the same as the CRD's CEL rules (a unit test keeps them equal); the
# operator checks them too, for objects stored before a rule existed.
MIN_EVERY = datetime.timedelta(seconds=1)
# Each rotation generates a key: microseconds for EC and EdDSA, seconds of CPU for RSA-4096.
MIN_RSA_EVERY = datetime.timedelta(hours=1)
# Each rotation keeps a retired key in JWKS for retainAfter, so retainAfter is at most this
# many periods: the schedule keeps about as many retired keys, and the key Secret,
# status.retired and JWKS stay small (every: 1h with the default retainAfter: 24h fits).
MAX_RETAINED_ROTATIONS = 24
# Manual rotations wait while this many retired keys are still published: with the
# schedule's (about MAX_RETAINED_ROTATIONS more) within status.retired's 64 items.
MAX_RETIRED_KEYS = 32
# Kids one kubemint.io/withdraw annotation may name (a key set holds about 2 + retired).
MAX_WITHDRAW_KIDS = 16
_KID = re.compile(r"[A-Za-z0-9_-]{1,128}")


@dataclass(frozen=True)
class SigningKeySpec:
    algorithm: str
    use: str
    key_size: int | None
    every: datetime.timedelta
    pre_publish: datetime.timedelta
    retain_after: datetime.timedelta
    secret_name: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SigningKeySpec:
        """Raises ValueError (or KeyError/TypeError) for a body the CRD would not admit."""
        spec = body.get("spec") or {}
        rotation = spec.get("rotation") or {}
        algorithm = spec.get("algorithm", DEFAULT_ALGORITHM)
        keys.use_of(algorithm)  # UnsupportedAlgorithm (a ValueError) for anything unknown
        return cls(
            algorithm=algorithm,
            use=key_use(spec),
            key_size=spec.get("keySize"),
            every=parse_duration(rotation.get("every", DEFAULT_EVERY), "spec.rotation.every"),
            pre_publish=parse_duration(
                rotation.get("prePublish", DEFAULT_PRE_PUBLISH), "spec.rotation.prePublish"
            ),
            retain_after=parse_duration(
                rotation.get("retainAfter", DEFAULT_RETAIN_AFTER), "spec.rotation.retainAfter"
            ),
            secret_name=spec.get("secretName") or f"{body['metadata']['name']}-signing-keys",
        )


def key_use(spec: Mapping[str, Any]) -> str:
    """A SigningKey's use: `spec.use`, or what `spec.algorithm` implies when it is unset
    ("enc" for RSA-OAEP-256, "sig" for every other algorithm; admission keeps them in step).
    The CRD has no default for `use`, so an omitted one reaches here and is inferred."""
    use = spec.get("use")
    if use:
        return str(use)
    return "enc" if spec.get("algorithm") in keys.ENCRYPTION_ALGORITHMS else "sig"


def withdraw_request(annotations: Mapping[str, str] | None) -> tuple[str, ...]:
    """The kids the kubemint.io/withdraw annotation names (comma- or space-separated, in
    order, without repeats); ValueError naming the annotation (spelled out in the messages:
    docs/troubleshooting.md quotes them) for a value that is not a list
    of at most MAX_WITHDRAW_KIDS kids (RFC 7638 thumbprints are base64url)."""
    value = (annotations or {}).get(ANNOTATION_WITHDRAW) or ""
    kids = tuple(dict.fromkeys(part for part in re.split(r"[\s,]+", value) if part))
    bad = next((i for i, kid in enumerate(kids) if not _KID.fullmatch(kid)), None)
    if bad is not None:  # never echoed: whatever was pasted there may be a secret
        raise ValueError(
            f"metadata.annotations[kubemint.io/withdraw]: item {bad + 1} is not a key id "
            "(base64url, at most 128 characters; see status.active.kid, status.next.kid and "
            "status.retired)"
        )
    if len(kids) > MAX_WITHDRAW_KIDS:
        raise ValueError(
            f"metadata.annotations[kubemint.io/withdraw]: names {len(kids)} kids, "
            f"at most {MAX_WITHDRAW_KIDS}"
        )
    return kids


def withdrawal_patch(
    body: Mapping[str, Any], kids: tuple[str, ...], *, active: bool, retired: bool
) -> dict[str, Any]:
    """The merge patch that adds `kids` (and the SigningKey's active and next kids, and its
    retired kids, when asked) to its kubemint.io/withdraw annotation, keeping the kids it already
    names; ValueError when nothing would be withdrawn or the result would not be valid."""
    status = body.get("status") or {}
    wanted = list(kids)
    if active:
        kid = (status.get("active") or {}).get("kid")
        if not kid:
            raise ValueError("the SigningKey has no status.active.kid yet")
        # The operator discards the staged next key with the active one; naming it too keeps
        # it out of a restored backup even when status (status.withdrawn) is not restored.
        staged = (status.get("next") or {}).get("kid")
        wanted += [str(kid), *([str(staged)] if staged else [])]
    if retired:
        wanted += [str(r["kid"]) for r in status.get("retired") or () if r.get("kid")]
    if not wanted:
        raise ValueError("name the kids to withdraw, or --active / --retired")
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    merged = ",".join(dict.fromkeys((*withdraw_request(annotations), *wanted)))
    withdraw_request({ANNOTATION_WITHDRAW: merged})  # the operator's own check, before it runs
    return {"metadata": {"annotations": {ANNOTATION_WITHDRAW: merged}}}


def withdrawn_by(body: Mapping[str, Any]) -> frozenset[str]:
    """The kids a SigningKey says are withdrawn: its annotation (when it is valid: the operator
    withdraws nothing new for an invalid one) and status.withdrawn."""
    try:
        named = set(withdraw_request((body.get("metadata") or {}).get("annotations")))
    except ValueError:
        named = set()
    for item in (body.get("status") or {}).get("withdrawn") or ():
        if isinstance(item, Mapping) and isinstance(item.get("kid"), str):
            named.add(item["kid"])
    return frozenset(named)
