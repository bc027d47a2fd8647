"""A rebuild that fails keeps the previous view but never looks healthy: it is counted, its
error type is kept for /readyz, and the next success clears it."""

from __future__ import annotations

import pytest
from kubernetes import client

from kubemint.store.snapshot import Snapshot
from kubemint.store.view import ClusterView


def test_a_failed_rebuild_keeps_the_view_and_says_so_until_one_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    view = ClusterView(client.ApiClient(), "kubemint-system")
    good = Snapshot(skipped={"OAuth2Client": 1})
    monkeypatch.setattr(view, "_build", lambda: good)
    assert view.rebuild_once()
    assert view.snapshot() is good
    assert view.rebuild_stats().last_error is None
    assert view.rebuild_stats().last_success > 0

    def fail() -> Snapshot:
        raise OverflowError("one object's duration")

    monkeypatch.setattr(view, "_build", fail)
    assert not view.rebuild_once()
    assert view.snapshot() is good  # still serving the previous view …
    stats = view.rebuild_stats()
    assert (stats.failures, stats.last_error) == (1, "OverflowError")  # … but not as healthy

    monkeypatch.setattr(view, "_build", Snapshot)
    assert view.rebuild_once()
    assert view.rebuild_stats().last_error is None
    assert view.rebuild_stats().failures == 1


def test_a_failing_snapshot_listener_does_not_undo_the_rebuild(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def listener(_: Snapshot) -> None:
        raise RuntimeError("issuer tracking failed")

    view = ClusterView(client.ApiClient(), "kubemint-system", on_snapshot=listener)
    monkeypatch.setattr(view, "_build", Snapshot)
    assert view.rebuild_once()
    assert view.rebuild_stats().last_error is None
