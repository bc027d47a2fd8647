"""The record contract: names that cannot collide, a lossless round trip, nothing trusted that
a writer other than kubemint could have chosen."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest

from kubemint.api.records import (
    AccountRecord,
    ClientRecord,
    Generation,
    KeySet,
    Owner,
    Ownership,
    RecordError,
    StoredKey,
    Withdrawal,
    decode,
    decode_key_set,
    decode_keys,
    encode,
    encode_keys,
    owner_labels,
    ownership,
    record_name,
    record_role,
)
from kubemint.crypto import custody, keys

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
CLIENT = Owner("OAuth2Client", "team", "a-x", "11111111-1111-1111-1111-111111111111")


def _secret(record: ClientRecord | AccountRecord, name: str | None = None) -> dict[str, Any]:
    owner = record.owner
    return {
        "metadata": {
            "name": name or record_name(owner.kind, owner.uid),
            "namespace": "kubemint-system",
            "labels": owner_labels(owner, record_role(owner.kind)),
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in encode(record).items()},
    }


def test_a_client_record_round_trips_through_a_secret_unchanged() -> None:
    record = ClientRecord(
        CLIENT,
        "team.a-x",
        "client_secret_jwt",
        (
            Generation("a" * 64, T0, hmac_key="kmint_x"),
            Generation("b" * 64, T0, not_after=T0 + datetime.timedelta(hours=1)),
        ),
        {"keys": [keys.generate("ES256").public_jwk()]},
    )
    assert decode(_secret(record)) == record


def test_an_account_record_round_trips_through_a_secret_unchanged() -> None:
    owner = Owner("ServiceAccount", "team", "bot", "22222222-2222-2222-2222-222222222222")
    record = AccountRecord(
        owner,
        "kubemint:serviceaccount:team:bot",
        "bot",
        (Generation("c" * 64, T0),),
        {"https://ci.test": {"keys": []}},
    )
    assert decode(_secret(record)) == record


def test_keys_round_trip() -> None:
    stored = (StoredKey(keys.generate("ES256"), "active", T0, activated_at=T0),)
    secret = {
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in encode_keys(stored).items()}
    }
    assert decode_keys(secret) == stored


def _keys_secret(text: str) -> dict[str, Any]:
    return {"data": {"keys.json": base64.b64encode(text.encode()).decode()}}


def test_a_key_set_with_public_only_retired_keys_and_withdrawals_round_trips() -> None:
    retired = custody.verify_only(keys.generate("ES256"))
    stored = (
        StoredKey(keys.generate("ES256"), "active", T0, activated_at=T0),
        StoredKey(keys.generate("ES256"), "next", T0),
        StoredKey(retired, "retired", T0, retired_at=T0, remove_after=T0),
    )
    withdrawn = (Withdrawal("leaked", T0),)
    text = encode_keys(stored, withdrawn)["keys.json"]
    entry = json.loads(text)["keys"][2]
    assert "privateKey" not in entry
    assert set(entry["publicJwk"]) == {"kty", "crv", "x", "y"}
    assert decode_key_set(_keys_secret(text)) == KeySet(stored, withdrawn)


def test_a_secret_written_before_retired_keys_lost_their_private_part_still_reads() -> None:
    old = keys.generate("ES256")
    stored = (StoredKey(old, "retired", T0, retired_at=T0, remove_after=T0),)
    text = json.dumps({"keys": [stored[0].to_json()]})  # no "withdrawn" either
    assert "privateKey" in text
    assert decode_key_set(_keys_secret(text)) == KeySet(stored, ())


@pytest.mark.parametrize(
    "entry",
    [
        {"state": "active", "publicJwk": {"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}},
        {"state": "retired", "publicJwk": {"kty": "EC", "crv": "P-256", "x": "x", "d": "d"}},
        {"state": "retired", "publicJwk": {"kty": "oct", "k": "c2VjcmV0"}},
        {"state": "stolen", "privateKey": "PEM"},
    ],
    ids=[
        "an active key without its private key",
        "a public JWK holding a private member",
        "a symmetric key",
        "an unknown state",
    ],
)
def test_a_key_entry_that_breaks_the_format_is_unreadable(entry: dict[str, Any]) -> None:
    full = {"kid": "k", "alg": "ES256", "use": "sig", "createdAt": "2026-01-01T00:00:00Z", **entry}
    with pytest.raises(RecordError):
        decode_key_set(_keys_secret(json.dumps({"keys": [full]})))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("team", "a-x"), ("team-a", "x")),  # collided as client-team-a-x
        (("team", "s" * 63 + "-one"), ("team", "s" * 63 + "-two")),  # collided at 63 chars
    ],
    ids=["namesake namespaces", "a shared 63-character prefix"],
)
def test_record_names_never_collide_for_different_objects(
    a: tuple[str, str], b: tuple[str, str]
) -> None:
    first = Owner("OAuth2Client", *a, "uid-1")
    second = Owner("OAuth2Client", *b, "uid-2")
    assert record_name(first.kind, first.uid) != record_name(second.kind, second.uid)
    assert all(len(v) <= 63 for v in owner_labels(second, "client-verification").values())
    assert len(record_name("ServiceAccount", "x" * 36)) <= 253


def test_a_record_under_another_name_is_not_trusted() -> None:
    record = ClientRecord(CLIENT, "team.a-x", "client_secret_basic")
    with pytest.raises(RecordError):
        decode(_secret(record, name="client-team-a-x"))


def test_a_secret_with_record_labels_but_no_record_is_not_trusted() -> None:
    secret = _secret(ClientRecord(CLIENT, "team.a-x", "client_secret_basic"))
    secret["data"] = {"client.json": base64.b64encode(b'{"secrets": []}').decode()}
    with pytest.raises(RecordError):
        decode(secret)


@pytest.mark.parametrize(
    ("secret", "record", "expected"),
    [
        (None, True, Ownership.ABSENT),
        ("ours", True, Ownership.OURS),
        ("other-uid", True, Ownership.FOREIGN),
        ("plain", True, Ownership.FOREIGN),
        ("controlled", False, Ownership.OURS),
        ("controlled-by-other", False, Ownership.FOREIGN),
        ("plain", False, Ownership.FOREIGN),
    ],
    ids=[
        "a missing Secret may be created",
        "a record written for this uid is ours",
        "a record for another uid is foreign",
        "a Secret kubemint did not write is not a record of ours",
        "a Secret controlled by this object is ours",
        "a Secret controlled by another object is foreign",
        "a Secret nobody controls is foreign",
    ],
)
def test_kubemint_writes_only_over_what_it_made_for_this_object(
    secret: str | None, record: bool, expected: Ownership
) -> None:
    other = Owner(CLIENT.kind, CLIENT.namespace, CLIENT.name, "someone-else")
    bodies: dict[str | None, dict[str, Any] | None] = {
        None: None,
        "ours": _secret(ClientRecord(CLIENT, "team.a-x", "client_secret_basic")),
        "other-uid": _secret(
            ClientRecord(other, "team.a-x", "client_secret_basic"),
            name=record_name(CLIENT.kind, CLIENT.uid),
        ),
        "plain": {"metadata": {"name": "x", "namespace": "team"}, "data": {}},
        "controlled": _controlled(CLIENT.uid),
        "controlled-by-other": _controlled("someone-else"),
    }
    assert ownership(bodies[secret], CLIENT, record=record) is expected


def _controlled(uid: str) -> dict[str, Any]:
    ref = {"apiVersion": "kubemint.io/v1alpha1", "kind": "OAuth2Client", "name": "a-x"}
    return {
        "metadata": {
            "name": "a-x-credentials",
            "namespace": "team",
            "ownerReferences": [{**ref, "uid": uid, "controller": True}],
        }
    }
