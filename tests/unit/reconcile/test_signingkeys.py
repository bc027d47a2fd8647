"""SigningKey rotation: staged next key, scheduled and manual promotion, retention, removal."""

from __future__ import annotations

import datetime
import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemint.api.meta import parse_duration
from kubemint.api.records import StoredKey
from kubemint.api.signingkey import (
    MAX_RETAINED_ROTATIONS,
    MAX_RETIRED_KEYS,
    MIN_EVERY,
    MIN_RSA_EVERY,
    SigningKeySpec,
)
from kubemint.crypto.keys import KeyMaterial, Material, PublicMaterial
from kubemint.reconcile.signingkeys import (
    RotationPlan,
    check_retention,
    check_schedule,
    plan_rotation,
)

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
BODY = {
    "metadata": {"name": "default"},
    "spec": {
        "algorithm": "ES256",
        "rotation": {"every": "720h", "prePublish": "24h", "retainAfter": "48h"},
    },
}
SPEC = SigningKeySpec.from_body(BODY)


def _generator() -> Callable[[str, int | None], KeyMaterial]:
    counter = itertools.count(1)
    return lambda alg, size: KeyMaterial(f"kid{next(counter)}", alg, "sig", "PEM")


def _verify_only(material: Material) -> Material:
    """What custody.verify_only keeps, for the fake "PEM" keys of these tables."""
    if isinstance(material, PublicMaterial) or material.use != "sig":
        return material
    jwk = {"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}
    return PublicMaterial(material.kid, material.algorithm, material.use, jwk, "opaque")


def _plan(
    stored: tuple[StoredKey, ...],
    now: datetime.datetime,
    spec: SigningKeySpec = SPEC,
    manual: str | None = None,
    last: str | None = None,
    **options: Any,
) -> RotationPlan:
    return plan_rotation(
        spec,
        stored,
        now,
        manual_request=manual,
        last_manual=last,
        generate=_generator(),
        verify_only=_verify_only,
        **options,
    )


def _kids(plan: RotationPlan) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in plan.keys:
        out.setdefault(key.state, []).append(key.material.kid)
    return out


def _steady() -> tuple[StoredKey, ...]:
    """An active key since T0 and its staged successor."""
    return (
        StoredKey(KeyMaterial("a", "ES256", "sig", "PEM"), "active", T0, activated_at=T0),
        StoredKey(KeyMaterial("n", "ES256", "sig", "PEM"), "next", T0),
    )


def test_spec_defaults_and_the_secret_name_come_from_the_body() -> None:
    spec = SigningKeySpec.from_body({"metadata": {"name": "k"}, "spec": {}})
    assert (spec.algorithm, spec.use, spec.secret_name) == ("ES256", "sig", "k-signing-keys")
    assert spec.every == 720 * HOUR


def test_a_new_signing_key_gets_an_active_and_a_published_next_key() -> None:
    plan = _plan((), T0)
    assert _kids(plan) == {"active": ["kid1"], "next": ["kid2"]}
    assert plan.next_rotation_at == T0 + 720 * HOUR
    assert [reason for reason, _ in plan.events] == ["KeyGenerated", "KeyGenerated"]


def test_nothing_changes_before_the_rotation_is_due() -> None:
    plan = _plan(_steady(), T0 + 719 * HOUR)
    assert plan.keys == _steady()
    assert plan.events == ()


def test_a_due_rotation_promotes_the_staged_key_and_retires_the_old_one() -> None:
    now = T0 + 720 * HOUR
    plan = _plan(_steady(), now)
    assert _kids(plan) == {"active": ["n"], "next": ["kid1"], "retired": ["a"]}
    retired = plan.retired[0]
    assert retired.remove_after == now + 48 * HOUR
    assert plan.next_rotation_at == now + 720 * HOUR
    assert plan.next_check_at == now + 48 * HOUR


def test_a_retired_key_leaves_the_set_after_retain_after() -> None:
    now = T0 + 720 * HOUR
    rotated = _plan(_steady(), now).keys
    plan = _plan(rotated, now + 48 * HOUR)
    assert "retired" not in _kids(plan)
    assert ("KeyRemoved", "removed retired key a from JWKS") in plan.events


def test_a_manual_rotation_promotes_at_once_and_only_once() -> None:
    plan = _plan(_steady(), T0 + HOUR, manual="2026-01-01T01:00")
    assert _kids(plan)["active"] == ["n"]
    assert plan.manual_rotation == "2026-01-01T01:00"
    again = _plan(plan.keys, T0 + 2 * HOUR, manual="2026-01-01T01:00", last="2026-01-01T01:00")
    assert again.events == ()


def test_a_scheduled_promotion_waits_until_the_next_key_was_published_for_pre_publish() -> None:
    stored = (
        StoredKey(KeyMaterial("a", "ES256", "sig", "PEM"), "active", T0, activated_at=T0),
        StoredKey(KeyMaterial("n", "ES256", "sig", "PEM"), "next", T0 + 710 * HOUR),
    )
    assert _plan(stored, T0 + 720 * HOUR).events == ()
    assert _plan(stored, T0 + 734 * HOUR).active.material.kid == "n"


def test_an_algorithm_change_replaces_the_active_key_and_retires_it() -> None:
    spec = SigningKeySpec.from_body({**BODY, "spec": {**BODY["spec"], "algorithm": "ES384"}})
    plan = _plan(_steady(), T0 + HOUR, spec=spec)
    assert _kids(plan) == {"active": ["kid1"], "next": ["kid2"], "retired": ["a"]}
    assert plan.active.material.algorithm == "ES384"


def test_status_names_kids_and_times_and_no_key_material() -> None:
    status = _plan(_steady(), T0 + 720 * HOUR).status()
    assert status["active"]["kid"] == "n"
    assert status["next"]["kid"] == "kid1"
    assert status["retired"][0]["kid"] == "a"
    assert "PEM" not in repr(status)


def test_stored_keys_survive_a_json_round_trip() -> None:
    for key in _plan(_steady(), T0 + 720 * HOUR).keys:
        assert StoredKey.from_json(key.to_json()) == key


@pytest.mark.parametrize(
    ("lifetimes", "problem"),
    [
        ({}, False),
        ({"tasks/a": 15 * datetime.timedelta(minutes=1)}, False),
        ({"tasks/a": HOUR, "tasks/long": 72 * HOUR}, True),
    ],
    ids=[
        "no client uses the key",
        "tokens end before their key leaves JWKS",
        "a client's tokens would outlive their key",
    ],
)
def test_retain_after_must_cover_the_longest_token_lifetime(
    lifetimes: dict[str, datetime.timedelta], problem: bool
) -> None:
    outcome = check_retention(SPEC, lifetimes)
    assert (outcome is not None) == problem
    if outcome is not None:
        assert outcome.reason == "RetainAfterTooShort"
        assert "spec.rotation.retainAfter" in outcome.message
        assert "tasks/long" in outcome.message


# -- the schedule's bounds (issue 10 finding 4) ----------------------------------------------

CRD = Path(__file__).resolve().parents[3] / "crds" / "kubemint.io_signingkeys.yaml"
MINUTE = datetime.timedelta(minutes=1)


def _spec(algorithm: str = "ES256", **rotation: str) -> SigningKeySpec:
    return SigningKeySpec.from_body(
        {"metadata": {"name": "k"}, "spec": {"algorithm": algorithm, "rotation": rotation}}
    )


SCHEDULES = {
    "an EC key may rotate every second": (
        _spec(every="1s", prePublish="500ms", retainAfter="10s"),
        None,
    ),
    "an EdDSA key with the defaults is fine": (_spec("EdDSA"), None),
    "less than a second is refused": (
        _spec(every="900ms", prePublish="1ms", retainAfter="1s"),
        "spec.rotation.every must be at least 1s",
    ),
    "an RSA key may rotate hourly": (
        _spec("RS256", every="1h", prePublish="30m", retainAfter="1h"),
        None,
    ),
    "an RSA key rotating every 59 minutes is refused": (
        _spec("PS256", every="59m", prePublish="30m", retainAfter="1h"),
        "spec.rotation.every must be at least 1h for RSA keys",
    ),
    "an RSA encryption key has the same floor": (
        _spec("RSA-OAEP-256", every="10s", prePublish="1s", retainAfter="10s"),
        "spec.rotation.every must be at least 1h for RSA keys",
    ),
    "prePublish as long as every is refused": (
        _spec(every="2h", prePublish="2h", retainAfter="2h"),
        "spec.rotation.prePublish must be shorter than spec.rotation.every",
    ),
    "hourly with the default retainAfter (24 periods) is fine": (
        _spec(every="1h", prePublish="30m"),
        None,
    ),
    "retainAfter of more than 24 periods is refused": (
        _spec(every="1m", prePublish="10s"),  # the default retainAfter, 24h: 1,440 keys
        "spec.rotation.retainAfter must be at most 24 times spec.rotation.every",
    ),
}


@pytest.mark.parametrize(("spec", "problem"), SCHEDULES.values(), ids=SCHEDULES.keys())
def test_the_schedule_is_bounded_as_admission_bounds_it(
    spec: SigningKeySpec, problem: str | None
) -> None:
    outcome = check_schedule(spec)
    if problem is None:
        assert outcome is None
    else:
        assert outcome is not None
        assert outcome.reason == "InvalidRotation"
        assert outcome.message.startswith(problem)


def _cel_rules(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield from node.get("x-kubernetes-validations", [])
        for child in node.values():
            yield from _cel_rules(child)
    elif isinstance(node, list):
        for child in node:
            yield from _cel_rules(child)


def _rotation_rules() -> dict[str, dict[str, Any]]:
    """The CRD's CEL rules on spec.rotation, by the field they name."""
    rules = {}
    for rule in _cel_rules(yaml.safe_load(CRD.read_text())):
        field = rule.get("fieldPath", "")
        if "rotation" in rule["rule"] or field in (".every", ".prePublish", ".retainAfter"):
            rules[" ".join(rule["rule"].split())] = rule
    return rules


def test_the_python_checks_say_what_the_crd_rules_say() -> None:
    messages = {" ".join(r["message"].split()) for r in _rotation_rules().values()}
    for spec, problem in SCHEDULES.values():
        outcome = check_schedule(spec)
        if problem is not None:
            assert outcome is not None
            assert outcome.message in messages


def test_the_python_bounds_are_the_crd_rules_bounds() -> None:
    rules = _rotation_rules()
    floors = {
        parse_duration(found)
        for rule in rules
        for found in re.findall(r"duration\('([^']+)'\)", rule)
    }
    assert floors == {MIN_EVERY, MIN_RSA_EVERY}
    rsa = next(rule for rule in rules if "RSA-OAEP-256" in rule)
    assert f"duration('{int(MIN_RSA_EVERY.total_seconds()) // 3600}h')" in rsa
    assert f"<= {MAX_RETAINED_ROTATIONS} * duration(self.every)" in " ".join(rules)


# -- manual rotations are rate-limited, never dropped ----------------------------------------


def test_the_first_manual_rotation_is_done_at_once_and_its_time_recorded() -> None:
    plan = _plan(_steady(), T0 + HOUR, manual="r1")
    assert _kids(plan)["active"] == ["n"]
    assert plan.manual_rotation_at == T0 + HOUR
    assert plan.deferred_until is None
    assert plan.status()["lastManualRotationAt"] == "2026-01-01T01:00:00Z"
    assert plan.status()["manualRotationDeferredUntil"] is None


def test_a_manual_rotation_soon_after_another_is_deferred_with_one_event() -> None:
    first = _plan(_steady(), T0 + HOUR, manual="r1")
    now = T0 + HOUR + 20 * datetime.timedelta(seconds=1)
    second = _plan(first.keys, now, manual="r2", last="r1", last_manual_at=T0 + HOUR)
    assert second.keys == first.keys  # nothing generated, nothing promoted
    assert second.deferred_until == T0 + HOUR + MINUTE
    assert second.manual_rotation == "r1"  # r2 is still requested
    assert second.events == (
        (
            "RotationDeferred",
            "the rotation requested by kubemint.io/rotate is deferred until "
            "2026-01-01T01:01:00Z: manual rotations are limited to one every 60s",
        ),
    )
    assert "deferred until 2026-01-01T01:01:00Z" in second.summary()
    assert second.next_check_at == T0 + HOUR + MINUTE
    again = _plan(
        first.keys,
        now + datetime.timedelta(seconds=10),
        manual="r2",
        last="r1",
        last_manual_at=T0 + HOUR,
        deferred_before=second.deferred_until,
    )
    assert again.events == ()  # reported once, not on every reconcile
    assert again.deferred_until == second.deferred_until


def test_a_deferred_manual_rotation_is_done_once_the_interval_has_passed() -> None:
    first = _plan(_steady(), T0 + HOUR, manual="r1")
    later = T0 + HOUR + MINUTE
    plan = _plan(
        first.keys,
        later,
        manual="r2",
        last="r1",
        last_manual_at=T0 + HOUR,
        deferred_before=T0 + HOUR + MINUTE,
    )
    assert _kids(plan)["active"] == _kids(first)["next"]
    assert (plan.manual_rotation, plan.manual_rotation_at, plan.deferred_until) == (
        "r2",
        later,
        None,
    )


def test_the_interval_is_the_operators_setting() -> None:
    first = _plan(_steady(), T0 + HOUR, manual="r1")
    plan = _plan(
        first.keys,
        T0 + HOUR + 5 * datetime.timedelta(seconds=1),
        manual="r2",
        last="r1",
        last_manual_at=T0 + HOUR,
        manual_interval=3 * datetime.timedelta(seconds=1),
    )
    assert plan.deferred_until is None
    assert plan.manual_rotation == "r2"


def _crowded(count: int) -> tuple[StoredKey, ...]:
    """The steady pair and `count` retired keys, leaving JWKS one hour apart from T0 + 1h."""
    retired = tuple(
        StoredKey(
            _verify_only(KeyMaterial(f"old{i}", "ES256", "sig", "PEM")),
            "retired",
            T0,
            retired_at=T0,
            remove_after=T0 + (i + 1) * HOUR,
        )
        for i in range(count)
    )
    return (*_steady(), *retired)


def test_a_manual_rotation_waits_while_too_many_retired_keys_are_published() -> None:
    plan = _plan(_crowded(MAX_RETIRED_KEYS + 1), T0, manual="r1")
    assert _kids(plan)["active"] == ["a"]
    # Two keys must leave to get below the limit: the second leaves at T0 + 2h.
    assert plan.deferred_until == T0 + 2 * HOUR
    assert (
        "33 retired keys are still published, at most 32" in dict(plan.events)["RotationDeferred"]
    )
    done = _plan(_crowded(MAX_RETIRED_KEYS + 1), T0 + 2 * HOUR, manual="r1")
    assert _kids(done)["active"] == ["n"]
    assert done.deferred_until is None


def test_a_manual_request_on_a_new_key_set_needs_no_rotation_and_is_not_limited() -> None:
    plan = _plan((), T0, manual="r1", last="r0", last_manual_at=T0)
    assert _kids(plan) == {"active": ["kid1"], "next": ["kid2"]}
    assert plan.manual_rotation == "r1"  # fresh keys: nothing left to rotate away from
    assert plan.deferred_until is None


def test_a_view_older_than_the_key_secret_does_not_act_on_the_request_again() -> None:
    """A timer that waited for the lock while the change handler rotated holds the old
    status: the request it sees as new was done already."""
    rotated = _plan(_steady(), T0 + HOUR, manual="r1")
    stale = _plan(rotated.keys, T0 + HOUR, manual="r1", last=None, status_active_kid="a")
    assert stale.keys == rotated.keys
    assert stale.events == ()
    fresh = _plan(rotated.keys, T0 + HOUR, manual="r1", last="r1", status_active_kid="n")
    assert fresh.keys == rotated.keys
