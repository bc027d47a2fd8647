"""/readyz and /metrics tell when the view stopped following the cluster."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.testclient import TestClient

from kubemint.config import ServerSettings
from kubemint.server.app import create_app
from kubemint.store.snapshot import Snapshot
from kubemint.store.view import RebuildStats

SETTINGS = ServerSettings(namespace="kubemint-system", issuer="https://kubemint.test")


@dataclass
class FakeView:
    stats: RebuildStats = field(default_factory=lambda: RebuildStats(last_success=1_700_000_000))
    current: Snapshot = field(default_factory=Snapshot)

    def snapshot(self) -> Snapshot:
        return self.current

    def synced(self) -> bool:
        return True

    def stale_for(self) -> float:
        return 0.0

    def rebuild_stats(self) -> RebuildStats:
        return self.stats


def test_readyz_is_ready_while_rebuilds_succeed() -> None:
    response = TestClient(create_app(SETTINGS, FakeView())).get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_readyz_is_503_with_a_reason_while_the_view_cannot_be_rebuilt() -> None:
    view = FakeView(RebuildStats(failures=3, last_success=1_700_000_000, last_error="KeyError"))
    response = TestClient(create_app(SETTINGS, view)).get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "rebuild_failing"
    assert "could not be rebuilt (KeyError)" in body["reason"]


def test_metrics_count_failed_rebuilds_the_last_success_and_skipped_objects() -> None:
    view = FakeView(current=Snapshot(skipped={"OAuth2Client": 2}))
    app = TestClient(create_app(SETTINGS, view).state.metrics_app)
    view.stats.failures = 2
    app.get("/metrics")
    view.stats.failures = 5
    text = app.get("/metrics").text
    assert "kubemint_view_rebuild_failures_total 5.0" in text
    assert "kubemint_view_last_rebuild_success_timestamp_seconds 1.7e+09" in text
    assert 'kubemint_view_objects_skipped{kind="OAuth2Client"} 2.0' in text
    assert 'kubemint_view_objects_skipped{kind="AccessRule"} 0.0' in text


def test_the_main_port_does_not_serve_metrics_and_the_metrics_app_serves_only_them() -> None:
    app = create_app(SETTINGS, FakeView())
    assert TestClient(app).get("/metrics").status_code == 404
    metrics = TestClient(app.state.metrics_app)
    assert "kubemint_view_synced" in metrics.get("/metrics").text
    for path in ("/oauth2/jwks", "/healthz", "/authz/forward-auth"):
        assert metrics.get(path).status_code == 404, path
