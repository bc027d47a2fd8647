"""The revocation store against the real API server: what a watch feeds the index, the
watermark's conditional writes, and garbage collection (one deleteCollection per expired
slot, legacy hourly buckets by name) that leaves everything still needed in place."""

from __future__ import annotations

import json
import threading
import time

from kubernetes import client, config

from kubemint.devcluster import ControlPlane
from kubemint.store.informer import Informer
from kubemint.store.revocations import (
    SELECTOR,
    SLOT,
    Plan,
    RevocationIndex,
    RevocationStore,
    Target,
)
from tests.integration.kube_helpers import wait_for


def _names(cluster: ControlPlane, namespace: str) -> set[str]:
    listing = cluster.kubectl(
        "get", "configmaps", "-n", namespace, "-l", SELECTOR, "-o", "json"
    ).stdout  # fmt: skip
    return {i["metadata"]["name"] for i in json.loads(listing)["items"]}


def test_the_store_writes_what_the_watch_reads_and_sweeps_only_what_expired(
    cluster: ControlPlane, namespace: str
) -> None:
    api = config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    core = client.CoreV1Api(api)
    now = time.time()
    past = int(now) - 3 * SLOT  # expired, with leeway
    # A bucket of the previous format, expired, and one still current.
    for hour in (int(now) // 3600 - 2, int(now) // 3600 + 1):
        cluster.kubectl(
            "create", "configmap", f"kubemint-revoked-{hour}", "-n", namespace,
            f"--from-literal=legacy-{hour}={hour * 3600 + 1800}",
        )  # fmt: skip
        cluster.kubectl(
            "label", "configmap", f"kubemint-revoked-{hour}", "-n", namespace,
            "kubemint.io/role=revocations",
        )  # fmt: skip

    # The token server's reading side: a watch feeding an index of its own.
    watched = RevocationIndex()
    informer = Informer(
        "revocations",
        core.list_namespaced_config_map,
        namespace,
        on_change=lambda: None,
        label_selector=SELECTOR,
        sink=watched,
    )
    halt = threading.Event()
    thread = threading.Thread(target=informer.run, args=(halt,), daemon=True)
    thread.start()
    try:
        # One live entry per client: the expired one does not count against it.
        store = RevocationStore(api, namespace, RevocationIndex(), quota=1)
        old = Target("old-jti", past, past - 60, "ns.app", "uid-1")
        fresh = Target("fresh-jti", int(now) + 900, int(now), "ns.app", "uid-1")
        for target in (old, fresh):
            assert store.plan(target, now) is Plan.ENTRY
            store.write(target, Plan.ENTRY, now)
        store.write(old, Plan.ENTRY, now)  # idempotent: the same jti is the same object
        beyond = Target("third-jti", int(now) + 900, int(now), "ns.app", "uid-1")
        assert store.plan(beyond, now) is Plan.WATERMARK  # the quota is reached
        store.write(beyond, Plan.WATERMARK, now)
        assert store.plan(beyond, now) is Plan.NOTHING  # covered now
        store.write(beyond, Plan.WATERMARK, now - 30)  # an older T never moves it back
        assert store.index.watermark("ns.app") == int(now)

        later = {"jti": "x", "client_id": "ns.app", "iat": int(now) + 1}
        legacy = f"legacy-{int(now) // 3600 + 1}"
        wait_for(
            lambda: (
                watched.revokes({"jti": "fresh-jti"})
                and watched.revokes({"jti": legacy})
                and watched.watermark("ns.app") == int(now)
            ),
            "the watch to deliver the store's writes",
            timeout=10,
        )
        assert watched.revokes({"jti": "x", "client_id": "ns.app", "iat": int(now)})
        assert not watched.revokes(later)
        names = _names(cluster, namespace)
        assert len(names) == 5, names  # 2 buckets, 2 entries, 1 watermark

        requests = RevocationStore(api, namespace, watched).sweep(now)
        assert requests == 2  # the expired entry's slot, the expired bucket
        wait_for(lambda: len(_names(cluster, namespace)) == 3, "the sweep", timeout=10)
        wait_for(lambda: not watched.revokes({"jti": "old-jti"}), "the watch to see it")
        assert watched.revokes({"jti": "fresh-jti"})
        assert watched.revokes({"jti": legacy})
        assert watched.watermark("ns.app") == int(now)
    finally:
        halt.set()
        informer.stop()
        api.close()
