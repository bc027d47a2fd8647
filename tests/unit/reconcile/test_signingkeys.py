"""SigningKey rotation: staged next key, scheduled and manual promotion, retention, removal."""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable

import pytest

from kubemint.api.records import StoredKey
from kubemint.api.signingkey import SigningKeySpec
from kubemint.crypto.keys import KeyMaterial
from kubemint.reconcile.signingkeys import (
    RotationPlan,
    check_retention,
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


def _plan(
    stored: tuple[StoredKey, ...],
    now: datetime.datetime,
    spec: SigningKeySpec = SPEC,
    manual: str | None = None,
    last: str | None = None,
) -> RotationPlan:
    return plan_rotation(
        spec, stored, now, manual_request=manual, last_manual=last, generate=_generator()
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
