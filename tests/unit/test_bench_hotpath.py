"""bench.hotpath runs: both apps answer every request 200 through uvicorn's protocol (a
request that is not answered 200 ends the run with an error). No figure is asserted."""

from __future__ import annotations

import pytest
from bench import hotpath

pytestmark = pytest.mark.usefixtures("restored_logging")  # main configures logging


def test_the_in_process_token_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert hotpath.main(["--algorithms", "ES256", "--rounds", "1", "--requests", "5"]) == 0
    assert "ES256: bare" in capsys.readouterr().out


def test_its_latency_mode_runs_on_a_churning_view(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--algorithms", "ES256", "--duration", "0.5", "--clients", "50", "--churn", "20"]
    assert hotpath.main([*argv, "--connections", "2"]) == 0
    assert "50 clients, churn 20.0/s" in capsys.readouterr().out
