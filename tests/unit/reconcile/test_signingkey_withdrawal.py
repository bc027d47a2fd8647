"""SigningKey key-set transitions for custody: a retired key keeps only what verifies, and a
withdrawal takes kids out at once, with a fresh active key when the active one is named."""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from kubemint.api.records import StoredKey, Withdrawal
from kubemint.api.signingkey import MAX_WITHDRAW_KIDS, SigningKeySpec, withdraw_request
from kubemint.crypto.keys import KeyMaterial, Material, PublicMaterial
from kubemint.reconcile.signingkeys import (
    UNKNOWN_KID,
    RotationPlan,
    check_withdrawal,
    merge_withdrawals,
    plan_rotation,
)

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
SPEC = SigningKeySpec.from_body(
    {
        "metadata": {"name": "default"},
        "spec": {"algorithm": "ES256", "rotation": {"every": "720h", "retainAfter": "48h"}},
    }
)


def _generator() -> Callable[[str, int | None], KeyMaterial]:
    counter = itertools.count(1)
    return lambda alg, size: KeyMaterial(f"fresh{next(counter)}", alg, "sig", "PEM")


def _verify_only(material: Material) -> Material:
    if isinstance(material, PublicMaterial) or material.use != "sig":
        return material
    jwk = {"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}
    return PublicMaterial(material.kid, material.algorithm, material.use, jwk, "opaque")


def _plan(stored: tuple[StoredKey, ...], now: datetime.datetime, **options: Any) -> RotationPlan:
    return plan_rotation(
        SPEC,
        stored,
        now,
        manual_request=None,
        last_manual=None,
        generate=_generator(),
        verify_only=_verify_only,
        **options,
    )


def _key(kid: str, state: Any, **times: Any) -> StoredKey:
    return StoredKey(KeyMaterial(kid, "ES256", "sig", "PEM"), state, T0, **times)


def _set() -> tuple[StoredKey, ...]:
    """Active `a` and staged `n` since T0, and `r` retired at T0 (old format: it still holds
    its private key)."""
    return (
        _key("a", "active", activated_at=T0),
        _key("n", "next"),
        _key("r", "retired", retired_at=T0, remove_after=T0 + 800 * HOUR),
    )


def _kids(plan: RotationPlan) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in plan.keys:
        out.setdefault(key.state, []).append(key.kid)
    return out


def test_a_retired_key_keeps_only_its_public_part() -> None:
    plan = _plan(_set(), T0 + 721 * HOUR)  # the scheduled rotation is due
    assert _kids(plan)["active"] == ["n"]
    retired = {k.kid: k for k in plan.retired}
    assert set(retired) == {"a", "r"}
    assert all(isinstance(k.material, PublicMaterial) for k in retired.values())
    assert isinstance(plan.active.material, KeyMaterial)
    assert isinstance(plan.next.material, KeyMaterial)


def test_an_old_key_set_is_converged_and_says_so_once() -> None:
    plan = _plan(_set(), T0 + HOUR)
    assert _kids(plan) == {"active": ["a"], "next": ["n"], "retired": ["r"]}
    assert isinstance(plan.retired[0].material, PublicMaterial)
    assert "dropped the private keys of 1 retired keys" in dict(plan.events)["PrivateKeysDropped"]
    again = _plan(plan.keys, T0 + 2 * HOUR)
    assert again.keys == plan.keys
    assert "PrivateKeysDropped" not in dict(again.events)


def test_withdrawing_the_active_key_signs_with_a_fresh_key_not_the_staged_one() -> None:
    plan = _plan(_set(), T0 + HOUR, withdraw=("a",))
    kids = _kids(plan)
    assert kids["active"] == ["fresh1"]
    assert kids["next"] == ["fresh2"]
    assert kids["retired"] == ["r"]
    assert plan.active.activated_at == T0 + HOUR
    assert [w.kid for w in plan.withdrawn] == ["a", "n"]
    assert [reason for reason, _ in plan.warnings] == ["KeyWithdrawn", "KeyWithdrawn"]
    assert "withdrew active key a" in plan.warnings[0][1]
    assert "discarded the staged next key n" in plan.warnings[1][1]
    # The fresh key signs for a full period: no rotation right after the withdrawal.
    assert plan.next_rotation_at == T0 + HOUR + SPEC.every


def test_withdrawing_the_next_key_stages_a_fresh_one_and_keeps_the_active() -> None:
    plan = _plan(_set(), T0 + HOUR, withdraw=("n",))
    assert _kids(plan) == {"active": ["a"], "next": ["fresh1"], "retired": ["r"]}
    assert [w.kid for w in plan.withdrawn] == ["n"]


def test_withdrawing_a_retired_key_removes_it_before_its_time() -> None:
    plan = _plan(_set(), T0 + HOUR, withdraw=("r",))
    assert _kids(plan) == {"active": ["a"], "next": ["n"]}
    assert plan.withdrawn == (Withdrawal("r", T0 + HOUR),)
    assert "withdrew retired key r" in plan.warnings[0][1]


def test_naming_a_withdrawn_kid_again_changes_nothing() -> None:
    first = _plan(_set(), T0 + HOUR, withdraw=("a",))
    again = plan_rotation(
        SPEC,
        first.keys,
        T0 + 2 * HOUR,
        manual_request=None,
        last_manual=None,
        withdraw=("a",),
        withdrawn_before=first.withdrawn,
        generate=_generator(),
        verify_only=_verify_only,
    )
    assert again.keys == first.keys
    assert again.withdrawn == first.withdrawn
    assert again.warnings == ()
    assert again.events == ()
    assert check_withdrawal(again) is None


def test_a_recorded_kid_that_comes_back_is_withdrawn_again() -> None:
    """A backup restored from before the withdrawal brings the key back; the annotation may
    be gone by then, the record is not."""
    record = (Withdrawal("a", T0), Withdrawal("n", T0))
    plan = _plan(_set(), T0 + HOUR, withdrawn_before=record)
    assert "a" not in _kids(plan)["active"]
    assert "n" not in _kids(plan)["next"]
    assert plan.withdrawn == record  # recorded once, at the first withdrawal


def test_an_unknown_kid_is_reported_naming_the_annotation_and_the_others_are_withdrawn() -> None:
    plan = _plan(_set(), T0 + HOUR, withdraw=("nope", "r"))
    assert plan.unknown_withdrawals == ("nope",)
    assert "r" not in {k.kid for k in plan.keys}
    outcome = check_withdrawal(plan)
    assert outcome is not None
    assert (outcome.ready, outcome.reason) == (False, UNKNOWN_KID)
    assert outcome.message.startswith("metadata.annotations[kubemint.io/withdraw]: ")
    assert "nope" in outcome.message


def test_the_record_keeps_the_earliest_withdrawal_of_each_kid() -> None:
    secret = (Withdrawal("a", T0 + HOUR),)
    status = (Withdrawal("a", T0), Withdrawal("b", T0 + 2 * HOUR))
    assert merge_withdrawals(secret, status) == (
        Withdrawal("a", T0),
        Withdrawal("b", T0 + 2 * HOUR),
    )


@pytest.mark.parametrize(
    ("value", "kids"),
    [
        (None, ()),
        ("", ()),
        ("abc", ("abc",)),
        ("abc,def", ("abc", "def")),
        (" abc , def  abc ", ("abc", "def")),
    ],
)
def test_the_annotation_names_kids_separated_by_commas_or_spaces(
    value: str | None, kids: tuple[str, ...]
) -> None:
    annotations = {} if value is None else {"kubemint.io/withdraw": value}
    assert withdraw_request(annotations) == kids


def test_an_annotation_that_is_no_list_of_kids_is_refused_without_echoing_it() -> None:
    pasted = "-----BEGIN PRIVATE KEY----- MIGHAgEAMBMGByqGSM49/AgEGCCqGSM49AwEHBG0w"
    with pytest.raises(ValueError, match=r"metadata\.annotations\[kubemint\.io/withdraw\]") as e:
        withdraw_request({"kubemint.io/withdraw": pasted})
    assert "MIGHAgEA" not in str(e.value)
    many = ",".join(f"kid{i}" for i in range(MAX_WITHDRAW_KIDS + 1))
    with pytest.raises(ValueError, match=f"at most {MAX_WITHDRAW_KIDS}"):
        withdraw_request({"kubemint.io/withdraw": many})
