"""Client secrets and app passwords: creation, scheduled rotation, overlap, drift."""

from __future__ import annotations

import datetime
import itertools

import pytest

from kubemint.api.records import Generation
from kubemint.crypto import secrets
from kubemint.reconcile.rotating_secret import SecretPolicy, plan_secret

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
POLICY = SecretPolicy(rotate_every=24 * HOUR, overlap=HOUR)


def _generator() -> object:
    counter = itertools.count(1)
    return lambda: f"kmint_secret{next(counter)}"


def _gen(
    value: str, created: datetime.datetime, not_after: datetime.datetime | None = None
) -> Generation:
    return Generation(secrets.digest(value), created, not_after)


def test_the_first_reconcile_creates_a_secret() -> None:
    plan = plan_secret(None, (), POLICY, T0, _generator())  # type: ignore[arg-type]
    assert plan.plaintext == "kmint_secret1"
    assert [g.sha256 for g in plan.generations] == [secrets.digest("kmint_secret1")]
    assert plan.events == ()  # the expected outcome: no Event (one API write per object)
    assert plan.next_rotation_at == T0 + 24 * HOUR


def test_an_unchanged_secret_before_its_rotation_is_kept_as_is() -> None:
    stored = (_gen("kmint_a", T0),)
    plan = plan_secret("kmint_a", stored, POLICY, T0 + HOUR, _generator())  # type: ignore[arg-type]
    assert plan.plaintext == "kmint_a"
    assert plan.generations == stored
    assert plan.events == ()


def test_a_due_rotation_keeps_the_previous_secret_valid_for_the_overlap() -> None:
    now = T0 + 24 * HOUR
    plan = plan_secret("kmint_a", (_gen("kmint_a", T0),), POLICY, now, _generator())  # type: ignore[arg-type]
    assert plan.plaintext == "kmint_secret1"
    current, previous = plan.generations
    assert current.sha256 == secrets.digest("kmint_secret1")
    assert previous.sha256 == secrets.digest("kmint_a")
    assert previous.not_after == now + HOUR
    assert plan.previous_expires_at == now + HOUR
    assert plan.next_check_at == now + HOUR
    assert plan.events[0][0] == "SecretRotated"


def test_a_previous_secret_stops_working_when_its_overlap_ends() -> None:
    stored = (_gen("kmint_b", T0), _gen("kmint_a", T0 - HOUR, not_after=T0 + HOUR))
    plan = plan_secret("kmint_b", stored, POLICY, T0 + HOUR, _generator())  # type: ignore[arg-type]
    assert [g.sha256 for g in plan.generations] == [secrets.digest("kmint_b")]


def test_a_hand_deleted_secret_is_regenerated_and_the_lost_one_overlaps() -> None:
    plan = plan_secret(None, (_gen("kmint_a", T0),), POLICY, T0 + HOUR, _generator())  # type: ignore[arg-type]
    assert plan.plaintext == "kmint_secret1"
    assert plan.generations[1].sha256 == secrets.digest("kmint_a")
    assert plan.generations[1].not_after == T0 + 2 * HOUR
    assert plan.events[0][0] == "SecretRegenerated"


def test_a_hand_edited_secret_is_never_accepted() -> None:
    plan = plan_secret("my-own-password", (_gen("kmint_a", T0),), POLICY, T0, _generator())  # type: ignore[arg-type]
    assert plan.plaintext == "kmint_secret1"
    assert secrets.digest("my-own-password") not in [g.sha256 for g in plan.generations]


def test_lost_verification_data_is_rebuilt_from_the_mounted_secret() -> None:
    plan = plan_secret("kmint_a", (), POLICY, T0, _generator())  # type: ignore[arg-type]
    assert plan.plaintext == "kmint_a"
    assert plan.events[0][0] == "SecretAdopted"


def test_without_rotate_every_nothing_is_scheduled() -> None:
    policy = SecretPolicy(rotate_every=None, overlap=HOUR)
    plan = plan_secret("kmint_a", (_gen("kmint_a", T0),), policy, T0 + 1000 * HOUR, _generator())  # type: ignore[arg-type]
    assert plan.plaintext == "kmint_a"
    assert plan.next_check_at is None


@pytest.mark.parametrize("keep", [True, False])
def test_hmac_keys_are_kept_only_for_client_secret_jwt(keep: bool) -> None:
    policy = SecretPolicy(rotate_every=None, overlap=HOUR, keep_hmac_key=keep)
    plan = plan_secret("kmint_a", (_gen("kmint_a", T0),), policy, T0, _generator())  # type: ignore[arg-type]
    assert plan.generations[0].hmac_key == ("kmint_a" if keep else None)


def test_generations_survive_a_json_round_trip() -> None:
    generation = Generation("ab" * 32, T0, not_after=T0 + HOUR, hmac_key="kmint_x")
    assert Generation.from_json(generation.to_json()) == generation
