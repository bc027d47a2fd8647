"""What the view keeps per object, now that its pieces are the only copy: a verification record
is kept as its record, not as the Secret it came in (a Secret a SigningKey may hold keeps its
body, keyrings read it), and a group of members (client-id claimants, an audience's clients)
stays right as it grows from a tuple into a set and shrinks back."""

from __future__ import annotations

import copy
import datetime

from kubemint.api.meta import API_VERSION, KIND_CLIENT, KIND_SIGNING_KEY
from kubemint.api.records import Generation, StoredKey
from kubemint.crypto import keys
from kubemint.store.builder import SMALL_GROUP, SnapshotBuilder, _Groups, full_changes
from kubemint.store.informer import Changes, key_of
from tests.unit.records import SERVER_NAMESPACE, client_record, keys_secret, uid_of

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
KEY = StoredKey(keys.generate("ES256"), "active", NOW, activated_at=NOW)


def _client(name: str) -> dict[str, object]:
    meta = {"namespace": "a", "name": name, "uid": uid_of(KIND_CLIENT, "a", name)}
    return {"metadata": meta | {"resourceVersion": "1"}, "spec": {"audiences": ["https://x"]}}


def test_a_record_secret_is_kept_as_its_record_and_a_keys_secret_as_its_body() -> None:
    record = client_record("a", "c1", secrets=(Generation("d" * 64, NOW),))
    controlled = copy.deepcopy(client_record("a", "c2"))
    controlled["metadata"]["ownerReferences"] = [
        {
            "apiVersion": API_VERSION,
            "kind": KIND_SIGNING_KEY,
            "name": "x",
            "uid": "u",
            "controller": True,
        }
    ]
    signing = keys_secret("default", [KEY])
    key = {
        "metadata": {
            "namespace": SERVER_NAMESPACE,
            "name": "default",
            "uid": uid_of(KIND_SIGNING_KEY, SERVER_NAMESPACE, "default"),
        },
        "spec": {"algorithm": "ES256"},
    }
    builder = SnapshotBuilder(SERVER_NAMESPACE)
    builder.apply("secrets", full_changes([record, controlled, signing]))
    builder.apply("clients", full_changes([_client("c1"), _client("c2")]))
    builder.apply("keys", full_changes([key]))
    snapshot = builder.snapshot()

    # a client's record is kept under its uid (the string its client's view holds), alone
    uid = uid_of(KIND_CLIENT, "a", "c1")
    kept = builder._secrets.piece(uid)
    assert kept is not None
    assert kept.body is None
    assert kept.kind == KIND_CLIENT
    assert kept.key is snapshot.clients["a.c1"].uid  # one string for both
    controlled_uid = uid_of(KIND_CLIENT, "a", "c2")
    assert builder._secrets.piece(controlled_uid).body is controlled  # a SigningKey may hold it
    assert builder._secrets.piece(f"{SERVER_NAMESPACE}/default-signing-keys").body is signing
    assert not builder._records  # every record is found at its uid: no index
    assert set(builder._secret_bodies) == {
        controlled["metadata"]["name"],
        signing["metadata"]["name"],
    }
    # … and what the view decides with them is unchanged: the record joins its client, the
    # keys Secret makes the ring.
    assert [g.sha256 for g in snapshot.clients["a.c1"].secrets] == ["d" * 64]
    assert snapshot.keys["default"].active_kid == KEY.material.kid


def test_a_group_grows_into_a_set_and_shrinks_back_without_losing_a_member() -> None:
    groups: _Groups[str, int] = _Groups()
    many = range(SMALL_GROUP + 5)
    for member in many:
        groups.move(member, (), ["g"])
        groups.move(member, (), ["g"])  # twice: still one member
    assert isinstance(groups.of("g"), set)
    assert sorted(groups.of("g")) == list(many)
    for member in many:
        if member % 2:
            groups.move(member, ["g"], ())
    assert sorted(groups.of("g")) == [m for m in many if not m % 2]
    for member in many:
        groups.move(member, ["g"], ["h"] if member < 2 else ())
    assert groups.of("g") == ()
    assert groups.of("h") == (0, 1)  # a tuple again: small groups cost 48 bytes
    groups.move(0, ["h"], ())
    assert groups.of("h") == (1,)  # one member alone, no container
    assert groups._members["h"] == 1
    assert groups.take() == {"g", "h"}


def test_a_group_of_tuple_members_tells_one_member_from_several() -> None:
    """Members may be tuples themselves ((namespace, name) refs): one alone is not read as
    several."""
    groups: _Groups[str, tuple[str, str]] = _Groups()
    groups.move(("a", "x"), (), ["g"])
    assert groups.of("g") == (("a", "x"),)
    groups.move(("a", "y"), (), ["g"])
    assert sorted(groups.of("g")) == [("a", "x"), ("a", "y")]
    groups.move(("a", "x"), ["g"], ())
    assert groups.of("g") == (("a", "y"),)
    groups.move(("a", "y"), ["g"], ())
    assert groups.of("g") == ()


def test_clients_set_up_alike_share_one_profile_and_a_change_gets_its_own() -> None:
    builder = SnapshotBuilder(SERVER_NAMESPACE)
    builder.apply("clients", full_changes([_client("c1"), _client("c2")]))
    first = builder.snapshot()
    assert first.clients["a.c1"].profile is first.clients["a.c2"].profile
    changed = _client("c2")
    changed["metadata"]["resourceVersion"] = "2"
    changed["spec"]["scopes"] = ["read"]
    builder.apply("clients", Changes(False, {key_of(changed): changed}))
    second = builder.snapshot()
    assert second.clients["a.c2"].scopes == frozenset({"read"})
    assert second.clients["a.c1"].profile is not second.clients["a.c2"].profile
    assert first.clients["a.c2"].scopes == frozenset()  # the shared profile is not changed


def test_a_published_snapshot_keeps_its_tables_while_the_builder_goes_on() -> None:
    """The builder lends its working tables to the Snapshot it publishes and copies them
    before writing again: an earlier Snapshot must never see a later change."""
    builder = SnapshotBuilder(SERVER_NAMESPACE)
    builder.apply("clients", full_changes([_client("c1"), _client("c2")]))
    first = builder.snapshot()
    before = dict(first.clients)
    builder.apply("clients", Changes(False, {"a/c1": None}))  # deleted
    gone = builder.snapshot()
    added = _client("c3")
    builder.apply("clients", full_changes([_client("c2"), added]))
    third = builder.snapshot()
    assert dict(first.clients) == before
    assert set(gone.clients) == {"a.c2"}
    assert set(third.clients) == {"a.c2", "a.c3"}
    assert first.clients is not gone.clients is not third.clients
