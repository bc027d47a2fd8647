"""The revocation store's pure parts: names, the record format, the quota decision, the
watermark and the index a watch feeds, garbage-collection slots, and the legacy buckets."""

from __future__ import annotations

import json
import string

import pytest

from kubemint.store.revocations import (
    ANNOTATION_CLIENT,
    LABEL_EXPIRES,
    LONGEST,
    SLOT,
    Plan,
    RevocationIndex,
    Target,
    entry_body,
    entry_name,
    expired_buckets,
    plan,
    read_record,
    slot_expired,
    slot_of,
    watermark_body,
    watermark_name,
)

NS = "kubemint-system"
NOW = 1_800_000_000


def _target(jti: str = "j1", client: str = "ns.app", iat: int | None = NOW - 10) -> Target:
    return Target(jti, NOW + 900, iat, client, "0b7f3c52-1111-2222-3333-444455556666")


def test_names_are_valid_fixed_length_and_depend_only_on_the_jti_or_client() -> None:
    long = "x" * 500  # a long jti or client id still gives a valid, bounded name
    for name in (entry_name("j1"), entry_name(long), watermark_name("ns.app")):
        assert len(name) <= 63
        assert set(name) <= set(string.ascii_lowercase + string.digits + "-")
    assert entry_name("j1") == entry_name("j1") != entry_name("j2")
    assert watermark_name("ns.a") != watermark_name("ns.b")
    assert not entry_name("j1").startswith("kubemint-revoked-")  # never read as a bucket


def test_an_entry_is_small_whatever_else_is_stored_and_keeps_the_legacy_data_shape() -> None:
    body = entry_body(NS, _target())
    assert body["data"] == {"j1": str(NOW + 900)}  # what a previous-version replica reads
    assert body["metadata"]["annotations"] == {ANNOTATION_CLIENT: "ns.app"}
    assert len(json.dumps(body)) < 600
    record = read_record(body)
    assert (record.jtis, record.client_id, record.issued_until) == (
        {"j1": NOW + 900},
        "ns.app",
        None,
    )


def test_an_entry_refuses_a_jti_that_is_not_a_configmap_key() -> None:
    with pytest.raises(ValueError, match="ConfigMap key"):
        entry_body(NS, _target(jti="a/b"))


def test_a_client_uid_that_is_not_a_label_value_is_left_out() -> None:
    body = entry_body(NS, Target("j1", NOW, None, "ns.app", "not a label!"))
    assert "kubemint.io/client-uid" not in body["metadata"]["labels"]


def test_quota_decision() -> None:
    assert plan(covered=True, live_entries=0, quota=5) is Plan.NOTHING
    assert plan(covered=False, live_entries=4, quota=5) is Plan.ENTRY
    # Beyond the quota a revocation is never refused: the client's watermark moves.
    assert plan(covered=False, live_entries=5, quota=5) is Plan.WATERMARK
    assert plan(covered=False, live_entries=50, quota=5) is Plan.WATERMARK
    assert plan(covered=True, live_entries=50, quota=5) is Plan.NOTHING


def test_a_watermark_revokes_its_client_s_tokens_issued_until_t_only() -> None:
    index = RevocationIndex()
    index.apply("ADDED", watermark_body(NS, "ns.app", "", NOW))
    assert index.revokes({"jti": "a", "client_id": "ns.app", "iat": NOW - 100})
    assert index.revokes({"jti": "a", "client_id": "ns.app", "iat": NOW})  # same second
    assert not index.revokes({"jti": "a", "client_id": "ns.app", "iat": NOW + 1})
    assert not index.revokes({"jti": "a", "client_id": "ns.other", "iat": NOW - 100})
    # A token with no integer iat counts as issued before it (fail closed).
    assert index.revokes({"jti": "a", "client_id": "ns.app"})
    assert index.revokes({"jti": "a", "client_id": "ns.app", "iat": "0"})
    assert index.covers(_target(iat=NOW - 5))
    assert not index.covers(_target(iat=NOW + 5))


def test_a_watermark_is_kept_as_long_as_a_token_it_covers_may_live() -> None:
    body = watermark_body(NS, "ns.app", "", NOW)
    assert body["metadata"]["labels"][LABEL_EXPIRES] == str(slot_of(NOW + LONGEST))
    assert not slot_expired(slot_of(NOW + LONGEST), NOW + LONGEST)


def test_the_index_follows_events_and_counts_live_entries_per_client() -> None:
    index = RevocationIndex()
    a1, a2 = entry_body(NS, _target("a1")), entry_body(NS, _target("a2"))
    other = entry_body(NS, _target("b1", client="ns.other"))
    index.reset([a1, other])
    index.apply("ADDED", a2)
    assert index.live_entries("ns.app", NOW) == 2
    assert index.live_entries("ns.other", NOW) == 1
    assert index.live_entries("ns.app", NOW + 901) == 0  # expired entries do not count
    assert index.revokes({"jti": "a2"})
    index.apply("DELETED", a2)
    assert not index.revokes({"jti": "a2"})
    assert index.live_entries("ns.app", NOW) == 1
    index.reset([])
    assert len(index) == 0
    assert not index.revokes({"jti": "a1"})


def test_a_jti_held_by_a_legacy_bucket_and_an_entry_stays_revoked_until_both_go() -> None:
    index = RevocationIndex()
    bucket = {"metadata": {"name": "kubemint-revoked-500000"}, "data": {"j1": str(NOW)}}
    entry = entry_body(NS, _target("j1"))
    index.reset([bucket, entry])
    index.apply("DELETED", bucket)
    assert index.revokes({"jti": "j1"})
    index.apply("DELETED", entry)
    assert not index.revokes({"jti": "j1"})


def test_a_local_write_never_moves_a_watermark_back() -> None:
    """This replica learns its own write before the watch event; a newer T already
    delivered by the watch (another replica's) must win."""
    index = RevocationIndex()
    index.apply("MODIFIED", watermark_body(NS, "ns.app", "", NOW + 60))
    index.learn(watermark_body(NS, "ns.app", "", NOW))
    assert index.watermark("ns.app") == NOW + 60
    index.learn(watermark_body(NS, "ns.app", "", NOW + 120))
    assert index.watermark("ns.app") == NOW + 120


def test_garbage_collection_slots_and_legacy_buckets() -> None:
    exp = NOW + 900
    slot = slot_of(exp)
    assert slot * SLOT > exp  # a slot ends after everything in it has expired
    assert not slot_expired(slot, exp)
    assert slot_expired(slot, slot * SLOT + SLOT)
    index = RevocationIndex()
    legacy = {"metadata": {"name": f"kubemint-revoked-{NOW // 3600 - 1}"}, "data": {"j": "1"}}
    index.reset([entry_body(NS, _target("j1")), legacy])
    assert index.expired(NOW) == ([], [])
    slots, buckets = index.expired(exp + 2 * SLOT)
    assert slots == [slot]
    assert buckets == [legacy["metadata"]["name"]]  # type: ignore[index]
    names = ["kubemint-revoked-1", "kubemint-revoked-x", "kubemint-rv-1", "kubemint-revoked-9"]
    assert expired_buckets(names, 3 * 3600) == ["kubemint-revoked-1"]


def test_a_record_that_does_not_read_is_left_out() -> None:
    assert read_record({"metadata": {}, "data": {"j": "not-a-number"}}).jtis == {}
    broken = watermark_body(NS, "ns.app", "", NOW)
    broken["metadata"]["annotations"]["kubemint.io/issued-until"] = "soon"
    index = RevocationIndex()
    index.apply("ADDED", broken)
    assert index.watermark("ns.app") is None


def test_the_quota_and_rate_settings_must_be_positive_integers() -> None:
    from kubemint.config import ServerSettings

    env = {"KUBEMINT_NAMESPACE": NS, "KUBEMINT_ISSUER": "https://auth.test"}
    defaults = ServerSettings.from_env(env)
    assert (defaults.revocations_per_client, defaults.revocation_writes_per_minute) == (100, 60)
    for name in ("KUBEMINT_REVOCATIONS_PER_CLIENT", "KUBEMINT_REVOCATION_WRITES_PER_MINUTE"):
        for bad in ("0", "-1", "lots"):
            with pytest.raises(ValueError, match=name):
                ServerSettings.from_env({**env, name: bad})
