"""kubemint.api.audiences: the ownership record round-trips through its ConfigMap and counts
only at the name its own audience hashes to; who owns an audience, decided from the record and
the live claims."""

from __future__ import annotations

import datetime

import pytest

from kubemint.api.accessrule import RuleClaim
from kubemint.api.audiences import (
    ASSIGNED,
    FIRST_CLAIM,
    SOURCE_ASSIGNED,
    SOURCE_CLAIMED,
    InvalidMode,
    InvalidRecord,
    OwnerRecord,
    Record,
    audience_of,
    check_mode,
    decide,
    decode,
    encode,
    record_name,
)

A = "https://calendar.test"


def test_a_record_round_trips_through_its_config_map() -> None:
    for source in (SOURCE_CLAIMED, SOURCE_ASSIGNED):
        record = OwnerRecord(A, "calendar", source)
        assert decode(encode(record, "kubemint-system"), A) == record


def test_names_are_valid_and_differ_for_audiences_that_only_differ_in_punctuation() -> None:
    names = {record_name(a) for a in ("https://a.b", "https://a-b", "https://a.b/", "a.b")}
    assert len(names) == 4
    for name in names:
        assert len(name) <= 253
        assert name.startswith("kubemint-audience-")
        assert name.replace("-", "").isalnum()


def test_a_claimed_record_belongs_to_the_owning_namespace() -> None:
    body = encode(OwnerRecord(A, "calendar", SOURCE_CLAIMED), "kubemint-system", "uid-1")
    assert body["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Namespace", "name": "calendar", "uid": "uid-1"}
    ]
    assert body["metadata"]["labels"]["kubemint.io/role"] == "audience-owner"


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        pytest.param(record_name("https://other"), {"audience": A, "namespace": "calendar"},
                     "metadata.name", id="a record at another audience's name does not count"),
        pytest.param(record_name(A), {"audience": "https://other", "namespace": "calendar"},
                     "data.audience", id="a record naming another audience does not count"),
        pytest.param(record_name(A), {"audience": A, "namespace": "Not A Namespace"},
                     "data.namespace", id="a record naming no valid namespace does not count"),
        pytest.param(record_name(A), {"audience": A, "namespace": "calendar", "source": "x"},
                     "data.source", id="a record with an unknown source does not count"),
    ],
)  # fmt: skip
def test_invalid_records(name: str, data: dict[str, str], problem: str) -> None:
    found = decode({"metadata": {"name": name}, "data": data}, A)
    assert isinstance(found, InvalidRecord)
    assert problem in found.problem


def test_a_hand_written_record_without_a_source_is_an_assignment() -> None:
    body = {"metadata": {"name": record_name(A)}, "data": {"audience": A, "namespace": "cal"}}
    assert decode(body, A) == OwnerRecord(A, "cal", SOURCE_ASSIGNED)
    assert audience_of(body) == A
    assert audience_of({"metadata": {"name": "x"}, "data": {"audience": A}}) is None


def test_the_mode_is_one_of_two() -> None:
    assert check_mode(FIRST_CLAIM) == FIRST_CLAIM
    assert check_mode(ASSIGNED) == ASSIGNED
    with pytest.raises(InvalidMode, match="firstClaim or assigned"):
        check_mode("first-claim")


# -- the decision ---------------------------------------------------------------------------

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(seconds=1)
T2 = T0 + datetime.timedelta(seconds=2)


def claim(namespace: str, created: datetime.datetime, releasing: bool = False) -> RuleClaim:
    return RuleClaim(namespace, f"rule-{created.second}", created, releasing)


def claimed(namespace: str) -> OwnerRecord:
    return OwnerRecord(A, namespace, SOURCE_CLAIMED)


def assigned(namespace: str) -> OwnerRecord:
    return OwnerRecord(A, namespace, SOURCE_ASSIGNED)


BROKEN = InvalidRecord(A, "data.namespace is not a namespace name")


@pytest.mark.parametrize(
    ("mode", "record", "claims", "owner", "kept"),
    [
        pytest.param(
            FIRST_CLAIM, None, [claim("cal", T0), claim("evil", T1)], "cal", claimed("cal"),
            id="without a record the oldest claim owns the audience and is recorded",
        ),
        pytest.param(
            FIRST_CLAIM, None, [claim("cal", T0), claim("evil", T0)], None, None,
            id="claims from two namespaces in the same second leave the audience to nobody",
        ),
        pytest.param(
            FIRST_CLAIM, None, [claim("cal", T0), claim("cal", T0)], "cal", claimed("cal"),
            id="two rules of one namespace in the same second are no contest",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"), [claim("evil", T0)], "cal", claimed("cal"),
            id="an owner that deleted every rule keeps the audience",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"), [claim("evil", T0), claim("cal", T2)], "cal",
            claimed("cal"),
            id="an owner whose re-created rule is younger than a refused one keeps the audience",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"), [claim("cal", T0, releasing=True), claim("evil", T1)],
            "evil", claimed("evil"),
            id="an owner releasing its only rule hands the audience to the oldest other claim",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"),
            [claim("cal", T0, releasing=True), claim("cal", T1), claim("evil", T1)],
            "cal", claimed("cal"),
            id="an owner keeps the audience while one of its rules does not release it",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"), [claim("cal", T0, releasing=True)], None, None,
            id="a release with no other claim deletes the record",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"),
            [claim("cal", T0, releasing=True), claim("a", T1), claim("b", T1)], None, None,
            id="a release to claims tied in the same second leaves the audience to nobody",
        ),
        pytest.param(
            FIRST_CLAIM, claimed("cal"), [claim("cal", T1), claim("evil", T0, releasing=True)],
            "cal", claimed("cal"),
            id="a release by another namespace than the owner changes nothing",
        ),
        pytest.param(
            FIRST_CLAIM, None, [claim("cal", T0, releasing=True), claim("evil", T1)], "evil",
            claimed("evil"),
            id="a releasing rule claims nothing",
        ),
        pytest.param(
            FIRST_CLAIM, assigned("cal"), [claim("cal", T0, releasing=True), claim("evil", T1)],
            "cal", assigned("cal"),
            id="an assignment is not released by the namespace it names",
        ),
        pytest.param(
            FIRST_CLAIM, assigned("cal"), [claim("evil", T0)], "cal", assigned("cal"),
            id="an assignment outranks an older claim in first-claim mode",
        ),
        pytest.param(
            FIRST_CLAIM, BROKEN, [claim("cal", T0)], None, BROKEN,
            id="an unreadable record leaves the audience to nobody rather than to a first claim",
        ),
        pytest.param(
            ASSIGNED, None, [claim("cal", T0)], None, None,
            id="in assigned mode a claim alone owns nothing",
        ),
        pytest.param(
            ASSIGNED, assigned("cal"), [claim("evil", T0), claim("cal", T1)], "cal",
            assigned("cal"),
            id="in assigned mode the assigned namespace owns the audience",
        ),
        pytest.param(
            ASSIGNED, claimed("cal"), [claim("cal", T0)], None, claimed("cal"),
            id="in assigned mode an earlier first claim owns nothing and its record is kept",
        ),
    ],
)  # fmt: skip
def test_ownership(
    mode: str, record: Record, claims: list[RuleClaim], owner: str | None, kept: Record
) -> None:
    decision = decide(A, mode, record, claims)
    assert decision.owner == owner
    assert decision.record == kept


def test_the_decision_does_not_depend_on_the_order_of_claims() -> None:
    claims = [claim("evil", T1), claim("cal", T0)]
    assert decide(A, FIRST_CLAIM, None, claims) == decide(A, FIRST_CLAIM, None, claims[::-1])
