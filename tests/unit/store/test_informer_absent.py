"""An optional resource whose CRD is not installed (an upgrade that has not applied the new
CRDs yet) counts as synced and empty, so it cannot keep the whole view unsynced; a required
one stays unsynced."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes.client.exceptions import ApiException

from kubemint.store.informer import Changes, Informer


def _missing(*_: Any, **__: Any) -> Any:
    raise ApiException(status=404, reason="Not Found")


def _run(absent_ok: bool) -> Informer:
    changed = threading.Event()
    informer = Informer("trustedissuers", _missing, on_change=changed.set, absent_ok=absent_ok)
    halt = threading.Event()
    thread = threading.Thread(target=informer.run, args=(halt,), daemon=True)
    thread.start()
    changed.wait(timeout=1.0)
    informer.synced.wait(timeout=0.5)
    halt.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    return informer


def test_a_missing_optional_resource_is_synced_and_empty() -> None:
    informer = _run(absent_ok=True)
    assert informer.synced.is_set()
    assert informer.changes() == Changes(True, {})  # a whole, empty list
    assert informer.stale_for() == 0.0


def test_a_missing_required_resource_stays_unsynced() -> None:
    informer = _run(absent_ok=False)
    assert not informer.synced.is_set()
