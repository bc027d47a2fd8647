"""SIGTERM drains before uvicorn shuts down: readiness fails, requests are still served and told
to close their connection, and only a second signal (or SIGINT) ends it at once."""

from __future__ import annotations

import signal

import uvicorn
from starlette.testclient import TestClient

from kubemint.server.app import create_app
from kubemint.server.shutdown import CloseWhileDraining, Drain, DrainingServer
from tests.unit.server.test_health import SETTINGS, FakeView


def test_readyz_fails_and_responses_close_their_connection_while_draining() -> None:
    drain = Drain()
    client = TestClient(CloseWhileDraining(create_app(SETTINGS, FakeView(), drain=drain), drain))
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").headers.get("connection") != "close"
    drain.begin()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "shutting_down"
    served = client.get("/oauth2/jwks")
    assert served.status_code == 200  # still serving
    assert served.headers["connection"] == "close"
    assert client.get("/healthz").status_code == 200  # liveness is unaffected


def test_the_first_sigterm_drains_and_exits_after_the_delay_a_second_one_at_once() -> None:
    drain = Drain()
    server = DrainingServer(uvicorn.Config(lambda *a: None), drain, delay=0.2)
    server.handle_exit(signal.SIGTERM, None)
    assert drain.active
    assert not server.should_exit
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit


def test_without_a_delay_sigterm_and_sigint_exit_as_uvicorn_does() -> None:
    for sig, delay in ((signal.SIGTERM, 0.0), (signal.SIGINT, 5.0)):
        drain = Drain()
        server = DrainingServer(uvicorn.Config(lambda *a: None), drain, delay=delay)
        server.handle_exit(sig, None)
        assert server.should_exit
        assert not drain.active


def test_the_drain_ends_in_shutdown_after_the_delay() -> None:
    import time

    server = DrainingServer(uvicorn.Config(lambda *a: None), Drain(), delay=0.1)
    server.handle_exit(signal.SIGTERM, None)
    deadline = time.monotonic() + 5
    while not server.should_exit and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.should_exit


def test_shutdown_settings_are_read_and_bad_values_name_the_variable() -> None:
    import pytest

    from kubemint.config import ServerSettings

    base = {"KUBEMINT_NAMESPACE": "kubemint-system", "KUBEMINT_ISSUER": "https://k.test"}
    defaults = ServerSettings.from_env(base)
    assert (defaults.shutdown_delay, defaults.shutdown_timeout) == (0.0, 20.0)
    chart = ServerSettings.from_env(
        base | {"KUBEMINT_SHUTDOWN_DELAY": "5", "KUBEMINT_SHUTDOWN_TIMEOUT": "20"}
    )
    assert (chart.shutdown_delay, chart.shutdown_timeout) == (5.0, 20.0)
    for name, value in (
        ("KUBEMINT_SHUTDOWN_DELAY", "-1"),
        ("KUBEMINT_SHUTDOWN_DELAY", "soon"),
        ("KUBEMINT_SHUTDOWN_TIMEOUT", "0"),
    ):
        with pytest.raises(ValueError, match=name):
            ServerSettings.from_env(base | {name: value})
