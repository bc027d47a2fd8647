"""The incremental view equals a from-scratch build after any sequence of changes.

Random (seeded, so reproducible) sequences of adds, modifications, re-creations (new uid)
and deletes over a small universe where objects collide on purpose: clients contesting one
client id, rules of two namespaces claiming one audience, an audience record assigning it,
records written for a uid that was re-created, federation of a Kubernetes ServiceAccount
that comes and goes, bad objects that must be skipped. After each batch the builder's
snapshot must equal `build_snapshot` of the objects as they are now.
"""

from __future__ import annotations

import datetime
import json
import random
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client

from kubemint.api.audiences import record_name
from kubemint.api.meta import KIND_ACCOUNT, KIND_CLIENT, KIND_SIGNING_KEY
from kubemint.api.records import Generation, StoredKey
from kubemint.api.records import record_name as record_secret_name
from kubemint.crypto import keys
from kubemint.store.builder import KINDS, SnapshotBuilder, full_changes
from kubemint.store.informer import Changes, key_of
from kubemint.store.snapshot import KeyCache, Snapshot, build_snapshot
from kubemint.store.view import ClusterView
from tests.unit.records import SERVER_NAMESPACE, account_record, client_record, keys_secret, uid_of

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
T0, T1 = "2026-11-22T10:00:00Z", "2026-11-22T10:00:01Z"
AUDIENCES = ("https://one.test", "https://two.test")
WHENS = (None, "request.grant_type == 'client_credentials'", "claims.x ==", "true")
OVERFLOW = "99999999999999999999999999999h"
KEY = StoredKey(keys.generate("ES256"), "active", NOW, activated_at=NOW)
NEXT = StoredKey(keys.generate("ES256"), "active", NOW, activated_at=NOW)

Body = dict[str, Any]


def _meta(kind: str, namespace: str, name: str, rng: random.Random, **extra: Any) -> Body:
    uid = uid_of(kind, namespace, name) + ("" if rng.random() < 0.8 else "-recreated")
    return {
        "namespace": namespace,
        "name": name,
        "uid": uid,
        "creationTimestamp": rng.choice((T0, T1)),
        **extra,
    }


def _client(rng: random.Random, namespace: str, name: str) -> Body:
    spec: Body = {"audiences": rng.sample(AUDIENCES, rng.randint(0, 2))}
    if rng.random() < 0.3:
        spec["clientId"] = rng.choice((f"{namespace}.shared", "b.shared", "outside"))
    if rng.random() < 0.2:
        spec["disabled"] = True
    if rng.random() < 0.1:
        spec["tokenLifetime"] = OVERFLOW  # skipped, counted
    return {"metadata": _meta(KIND_CLIENT, namespace, name, rng), "spec": spec}


def _account(rng: random.Random, namespace: str, name: str) -> Body:
    spec: Body = {"clients": rng.sample(["c1", "c2", "shared"], rng.randint(0, 2))}
    if rng.random() < 0.5:
        spec["federation"] = {"kubernetes": [{"serviceAccountName": rng.choice(("k1", "k2"))}]}
    if rng.random() < 0.4:
        issuer = {"issuer": "https://idp.test", "jwksUri": "https://idp.test/jwks"}
        if rng.random() < 0.5:
            issuer["when"] = "claims.sub == 'x'"
        spec.setdefault("federation", {})["issuers"] = [issuer]
    if rng.random() < 0.1:
        spec["appPasswords"] = {"secretName": "pw", "overlap": OVERFLOW}
    return {"metadata": _meta(KIND_ACCOUNT, namespace, name, rng), "spec": spec}


def _rule(rng: random.Random, namespace: str, name: str) -> Body:
    spec: Body = {
        "audience": rng.choice(AUDIENCES),
        "subjects": [{"kind": "OAuth2Client", "name": rng.choice(("c1", "c2"))}],
        "scopes": ["read"],
        "http": [{"paths": ["/api"], "methods": ["GET"]}],
    }
    when = rng.choice(WHENS)
    if when:
        spec["when"] = when
    if rng.random() < 0.1:
        spec["subjects"] = [{"name": "no kind"}]  # what the CRD would refuse: skipped
    annotations = {"kubemint.io/release-audience": "true"} if rng.random() < 0.15 else {}
    meta = _meta("AccessRule", namespace, name, rng, annotations=annotations)
    return {"metadata": meta, "spec": spec}


def _audience_record(rng: random.Random, audience: str) -> Body:
    name = record_name(audience)
    data = {"audience": audience, "namespace": rng.choice("ab"), "source": "assigned"}
    if rng.random() < 0.2:
        data["audience"] = "something else"  # an invalid record: nobody owns the audience
    return {"metadata": {"namespace": SERVER_NAMESPACE, "name": name}, "data": data}


def _record(rng: random.Random, kind: str, namespace: str, name: str) -> Body:
    secret = Generation(f"digest-{rng.randint(0, 3)}", NOW)
    if kind == KIND_CLIENT:
        return client_record(namespace, name, secrets=[secret])
    return account_record(namespace, name, passwords=[secret])


def _renamed(secret: Body, name: str) -> Body:
    secret["metadata"]["name"] = name
    return secret


def _sa(rng: random.Random, namespace: str, name: str) -> Body:
    return {"metadata": {"namespace": namespace, "name": name, "uid": f"k-{rng.randint(0, 2)}"}}


def _signing_key(rng: random.Random) -> Body:
    meta = _meta(KIND_SIGNING_KEY, SERVER_NAMESPACE, "default", rng)
    meta["uid"] = uid_of(KIND_SIGNING_KEY, SERVER_NAMESPACE, "default")
    spec = {"rotation": {"every": OVERFLOW}} if rng.random() < 0.1 else {}
    return {"metadata": meta, "spec": spec}


# (kind, key-making function) for every object of the universe
def _universe() -> list[tuple[str, Any]]:
    objects: list[tuple[str, Any]] = []
    for ns in "ab":
        for name in ("c1", "c2", "shared"):
            objects.append(("clients", lambda r, ns=ns, name=name: _client(r, ns, name)))
            objects.append(
                ("secrets", lambda r, ns=ns, name=name: _record(r, KIND_CLIENT, ns, name))
            )
        for name in ("s1", "s2"):
            objects.append(("accounts", lambda r, ns=ns, name=name: _account(r, ns, name)))
            objects.append(
                ("secrets", lambda r, ns=ns, name=name: _record(r, KIND_ACCOUNT, ns, name))
            )
        for name in ("r1", "r2"):
            objects.append(("rules", lambda r, ns=ns, name=name: _rule(r, ns, name)))
        for name in ("k1", "k2"):
            objects.append(("kubernetes-accounts", lambda r, ns=ns, name=name: _sa(r, ns, name)))
        # records under other names: c1's record in the Secret named after c2's uid (where
        # c2's own record is written too), and one under a name of no uid at all
        objects.append(
            (
                "secrets",
                lambda r, ns=ns: _renamed(
                    _record(r, KIND_CLIENT, ns, "c1"),
                    record_secret_name(KIND_CLIENT, uid_of(KIND_CLIENT, ns, "c2")),
                ),
            )
        )
        objects.append(
            (
                "secrets",
                lambda r, ns=ns: _renamed(
                    _record(r, KIND_CLIENT, ns, "shared"), f"copied-record-{ns}"
                ),
            )
        )
    for audience in AUDIENCES:
        objects.append(("audiences", lambda r, a=audience: _audience_record(r, a)))
    objects.append(("keys", _signing_key))
    objects.append(("secrets", lambda r: keys_secret("default", [r.choice((KEY, NEXT))])))
    return objects


def _comparable(snapshot: Snapshot) -> Snapshot:
    """Compiled conditions and parsed key sets compare by identity: compare what they are."""
    rules = {
        audience: tuple(
            replace(r, condition=r.condition.source if r.condition else None)  # type: ignore[arg-type]
            for r in owned
        )
        for audience, owned in snapshot.rules.items()
    }
    return replace(
        snapshot,
        rules=rules,
        verification_keys=snapshot.verification_keys is not None,  # type: ignore[arg-type]
    )


def _scratch(state: dict[str, dict[str, Body]], cache: KeyCache) -> Snapshot:
    return build_snapshot(
        server_namespace=SERVER_NAMESPACE,
        key_cache=cache,
        clients=state["clients"].values(),
        accounts=state["accounts"].values(),
        rules=state["rules"].values(),
        signing_keys=state["keys"].values(),
        secrets=state["secrets"].values(),
        kubernetes_accounts=state["kubernetes-accounts"].values(),
        audience_records=state["audiences"].values(),
        trusted_issuers=state["trusted"].values(),
    )


@pytest.mark.parametrize("seed", range(30))
def test_after_any_changes_the_incremental_view_equals_a_fresh_build(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 (reproducible test data, not secrets)
    universe = _universe()
    cache = KeyCache()
    state: dict[str, dict[str, Body]] = {kind: {} for kind in KINDS}
    builder = SnapshotBuilder(SERVER_NAMESPACE, key_cache=cache)
    version = 0
    for _ in range(40):
        pending: dict[str, dict[str, Body | None]] = {kind: {} for kind in KINDS}
        for _ in range(rng.randint(1, 4)):
            kind, make = rng.choice(universe)
            body = make(rng)
            key = key_of(body)
            if key in state[kind] and rng.random() < 0.3:
                del state[kind][key]
                pending[kind][key] = None
                continue
            version += 1
            body["metadata"]["resourceVersion"] = str(version)
            state[kind][key] = body
            pending[kind][key] = body
        for kind in KINDS:
            if rng.random() < 0.05:  # a relist: everything, some of it unchanged
                builder.apply(kind, full_changes(state[kind].values()))
            elif pending[kind]:
                builder.apply(kind, Changes(False, pending[kind]))
        incremental = builder.snapshot()
        assert _comparable(incremental) == _comparable(_scratch(state, cache))
        fresh = SnapshotBuilder(SERVER_NAMESPACE, key_cache=cache)
        for kind in KINDS:
            fresh.apply(kind, full_changes(state[kind].values()))
        fresh.snapshot()
        assert builder.federated == fresh.federated


def _client_body(name: str, version: str, **spec: Any) -> Body:
    meta = {
        "namespace": "a",
        "name": name,
        "uid": uid_of(KIND_CLIENT, "a", name),
        "creationTimestamp": T0,
        "resourceVersion": version,
    }
    return {"metadata": meta, "spec": {"audiences": [AUDIENCES[0]], **spec}}


def _builder_with_clients(count: int) -> SnapshotBuilder:
    builder = SnapshotBuilder(SERVER_NAMESPACE)
    clients = [_client_body(f"c{i}", "1") for i in range(count)]
    signing = {
        "metadata": {
            "namespace": SERVER_NAMESPACE,
            "name": "default",
            "uid": uid_of(KIND_SIGNING_KEY, SERVER_NAMESPACE, "default"),
        },
        "spec": {},
    }
    builder.apply("clients", full_changes(clients))
    builder.apply("keys", full_changes([signing]))
    builder.apply("secrets", full_changes([keys_secret("default", [KEY])]))
    return builder


def test_a_change_shares_every_mapping_it_did_not_touch() -> None:
    builder = _builder_with_clients(5)
    before = builder.snapshot()
    assert before.keys
    assert before.verification_keys is not None
    builder.apply("clients", Changes(False, {"a/c1": _client_body("c1", "2", disabled=True)}))
    after = builder.snapshot()
    assert after.clients["a.c1"].disabled
    assert not before.clients["a.c1"].disabled
    assert after.clients is not before.clients
    # the keys, so forward-auth's verified tokens, stay; so does everything else
    assert after.keys is before.keys
    assert after.verification_keys is before.verification_keys
    assert after.rules is before.rules
    assert after.accounts is before.accounts
    assert after.clients["a.c2"] is before.clients["a.c2"]


def test_a_new_resource_version_with_the_same_spec_publishes_nothing_new() -> None:
    """The operator's status writes bump resourceVersion: the view must not churn for them."""
    builder = _builder_with_clients(3)
    before = builder.snapshot()
    builder.apply("clients", Changes(False, {"a/c1": _client_body("c1", "7")}))
    assert builder.snapshot().clients is before.clients


def test_a_key_change_publishes_new_keys() -> None:
    builder = _builder_with_clients(1)
    before = builder.snapshot()
    builder.apply("secrets", Changes(False, {keys_key(): keys_secret("default", [NEXT])}))
    after = builder.snapshot()
    assert after.keys is not before.keys
    assert after.keys["default"].active_kid == NEXT.material.kid
    assert after.clients is before.clients


def keys_key() -> str:
    return key_of(keys_secret("default", [KEY]))


def test_a_bad_modification_isolates_only_that_object_and_its_fix_restores_it() -> None:
    builder = _builder_with_clients(3)
    builder.snapshot()
    bomb = _client_body("c1", "2", tokenLifetime=OVERFLOW)
    builder.apply("clients", Changes(False, {"a/c1": bomb}))
    broken = builder.snapshot()
    assert set(broken.clients) == {"a.c0", "a.c2"}
    assert broken.skipped == {"OAuth2Client": 1}
    builder.apply("clients", Changes(False, {"a/c1": _client_body("c1", "3")}))
    fixed = builder.snapshot()
    assert set(fixed.clients) == {"a.c0", "a.c1", "a.c2"}
    assert fixed.skipped == {}
    builder.apply("clients", Changes(False, {"a/c2": bomb | {"metadata": {}}}))
    assert builder.snapshot().skipped == {"OAuth2Client": 1}  # a body without metadata too
    builder.apply("clients", Changes(False, {"a/c2": None}))
    assert builder.snapshot().skipped == {}


class _Listing:
    """A list function serving one kind's objects as they are now, as the API server would."""

    def __init__(self, objects: dict[str, Body]) -> None:
        self.objects = objects

    def __call__(self, *_: Any, **__: Any) -> SimpleNamespace:
        listing = {"metadata": {"resourceVersion": "1"}, "items": list(self.objects.values())}
        return SimpleNamespace(data=json.dumps(listing).encode())


class _FailOnce:
    """Makes the builder's next snapshot() fail after it took in every change: a half-applied
    update, whose changes the informers handed over and no longer hold."""

    armed = False

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = SnapshotBuilder.snapshot

        def snapshot(builder: SnapshotBuilder) -> Snapshot:
            if self.armed:
                self.armed = False
                raise OverflowError("a bug half-way through an update")
            return real(builder)

        monkeypatch.setattr(SnapshotBuilder, "snapshot", snapshot)


@pytest.mark.parametrize("seed", range(12))
def test_fed_by_informers_that_keep_nothing_the_view_survives_failed_updates_by_relisting(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ClusterView's own update path: informers (which keep no bodies) hand over each
    change once; an update that fails half-way has every informer relist, no update runs
    before they all have, and the view then equals a fresh build again (no change lost)."""
    rng = random.Random(seed)  # noqa: S311 (reproducible test data, not secrets)
    universe = _universe()
    state: dict[str, dict[str, Body]] = {kind: {} for kind in KINDS}
    view = ClusterView(client.ApiClient(), SERVER_NAMESPACE)
    informers = {kind: view._informers[kind] for kind in KINDS}
    for kind, informer in informers.items():
        informer._list_fn, informer._args = _Listing(state[kind]), ()
        informer._relist()
        informer.synced.set()
    view._informers["revocations"].synced.set()
    fail = _FailOnce(monkeypatch)
    version, failures = 0, 0
    for step in range(30):
        for _ in range(rng.randint(1, 4)):
            kind, make = rng.choice(universe)
            body = make(rng)
            key = key_of(body)
            if key in state[kind] and rng.random() < 0.3:
                informers[kind]._apply("DELETED", state[kind].pop(key))
                continue
            version += 1
            body["metadata"]["resourceVersion"] = str(version)
            informers[kind]._apply("MODIFIED" if key in state[kind] else "ADDED", body)
            state[kind][key] = body
        if rng.random() < 0.05:  # a 410 Gone: one informer lists everything again
            rng.choice(list(informers.values()))._relist()
        if step % 7 == 3:
            fail.armed = True
            assert not view.rebuild_once()  # the previous view stays, not as healthy
            failures += 1
            assert view._builder is None
            assert all(i._relist_wanted.is_set() for i in informers.values())
            with pytest.raises(RuntimeError):
                view._build()  # nothing to start over from until every informer relisted
            for informer in informers.values():  # what each watch thread does next
                informer._relist()
        assert view.rebuild_once()
        assert _comparable(view.snapshot()) == _comparable(_scratch(state, view._keys))
    assert view.rebuild_stats().failures == failures > 0
