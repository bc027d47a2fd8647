"""The ownership record round-trips through its ConfigMap, and only a record at the name its
own audience hashes to counts."""

from __future__ import annotations

import pytest

from kubemint.api.ownership import (
    ASSIGNED,
    FIRST_CLAIM,
    SOURCE_ASSIGNED,
    SOURCE_CLAIMED,
    InvalidMode,
    InvalidRecord,
    OwnerRecord,
    audience_of,
    check_mode,
    decode,
    encode,
    record_name,
)

A = "https://calendar.example.com"


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
