"""An informer against the real API server keeps no copy of the objects: each change is handed
over once by `changes()` and forgotten, and `relist()` (what the view asks for after a failed
update, since nothing else holds the objects) cuts the running watch so the next changes() is
the whole list again soon, not when the watch would have timed out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client, config

from kubemint.devcluster import ControlPlane
from kubemint.store.informer import Changes, Informer

WATCH_TIMEOUT = 600  # far beyond the test: only relist() can end the watch in time


def _configmap(namespace: str, name: str, value: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace), data={"v": value}
    )


def _until(informer: Informer, ready: Callable[[Changes], bool], timeout: float = 20.0) -> Changes:
    """Collect changes() until `ready(collected)` holds; what was handed over, merged."""
    deadline = time.monotonic() + timeout
    full, bodies = False, dict[str, object]()
    merged = Changes(False, {})
    while time.monotonic() < deadline:
        got = informer.changes()
        full = full or got.full
        if got.full:
            bodies = {}
        bodies.update(got.bodies)
        merged = Changes(full, bodies)
        if ready(merged):
            return merged
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {merged}")


@pytest.fixture
def informer(cluster: ControlPlane, namespace: str) -> Iterator[tuple[Informer, client.CoreV1Api]]:
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, _configmap(namespace, "first", "1"))
    informer = Informer(
        "configmaps",
        core.list_namespaced_config_map,
        namespace,
        on_change=lambda: None,
        timeout_seconds=WATCH_TIMEOUT,
    )
    halt = threading.Event()
    thread = threading.Thread(target=informer.run, args=(halt,), daemon=True)
    thread.start()
    try:
        assert informer.synced.wait(20)
        yield informer, core
    finally:
        halt.set()
        informer.stop()
        thread.join(timeout=20)
        api_client.close()
    assert not thread.is_alive()


def test_changes_are_handed_over_once_and_a_relist_comes_at_once(
    informer: tuple[Informer, client.CoreV1Api], namespace: str
) -> None:
    watching, core = informer
    listed = watching.changes()
    assert listed.full
    first = f"{namespace}/first"
    assert set(listed.bodies) >= {first}
    assert watching.changes() == Changes(False, {})  # handed over: nothing kept to hand again

    core.create_namespaced_config_map(namespace, _configmap(namespace, "second", "2"))
    second = f"{namespace}/second"
    added = _until(watching, lambda c: second in c.bodies)
    assert not added.full
    assert first not in added.bodies  # only what changed

    core.delete_namespaced_config_map("first", namespace)
    deleted = _until(watching, lambda c: first in c.bodies)
    assert deleted.bodies[first] is None

    # The watch would run for WATCH_TIMEOUT seconds; relist() must end it now.
    assert not watching.relisted()
    started = time.monotonic()
    watching.relist()
    relisted = _until(watching, lambda c: c.full)
    assert time.monotonic() - started < 20
    assert second in relisted.bodies
    assert first not in relisted.bodies
    assert relisted.bodies[second]["data"] == {"v": "2"}

    # … and the watch goes on after the relist, without missing a change.
    core.patch_namespaced_config_map("second", namespace, {"data": {"v": "3"}})
    patched = _until(watching, lambda c: (c.bodies.get(second) or {}).get("data") == {"v": "3"})
    assert not patched.full
    assert watching.stale_for() == 0.0
