"""The calendar scenario (examples/calendar/) applied as the README documents it, on the chart's
release: the Calendar and File APIs and the Task service run on the kubemint image, and the
Task service's cycle (create an event, store an attachment, link them, list both) succeeds."""

from __future__ import annotations

import time

from kubemint.devcluster.layout import repo_root
from tests.node.chart.conftest import TIMINGS, Installed

EXAMPLE_ISSUER = "https://kubemint.example.com"


def test_the_task_service_cycle_succeeds_against_the_calendar_and_file_apis(
    installed: Installed,
) -> None:
    plane = installed.plane
    # "Replace https://kubemint.example.com with your issuer, install the chart as release
    # kubemint in kubemint-system, then kubectl apply --server-side -f examples/calendar/".
    manifests = sorted((repo_root() / "examples" / "calendar").glob("*.yaml"))
    text = "\n---\n".join(m.read_text() for m in manifests)
    assert EXAMPLE_ISSUER in text
    started = time.monotonic()
    plane.kubectl(
        "apply",
        "--server-side",
        "-f",
        "-",
        stdin=text.replace(EXAMPLE_ISSUER, installed.release.issuer),
        timeout=120,
    )
    for namespace, deployment in (
        ("calendar", "calendar-api"),
        ("files", "files-api"),
        ("tasks", "task-service"),
    ):
        plane.kubectl(
            "rollout",
            "status",
            "-n",
            namespace,
            f"deploy/{deployment}",
            "--timeout=240s",
            timeout=260,
        )
    # `kubectl logs -n tasks deploy/task-service` shows a cycle a minute; the first at start.
    deadline = time.monotonic() + 150
    log = ""
    while "cycle ok" not in log:
        assert time.monotonic() < deadline, f"no successful cycle:\n{log[-3000:]}"
        time.sleep(3)
        log = plane.kubectl("logs", "-n", "tasks", "deploy/task-service", check=False).stdout
    TIMINGS["calendar scenario applied to first successful cycle"] = round(
        time.monotonic() - started, 1
    )
    assert "calendar: created event" in log
    assert "files: stored attachment" in log
