"""The Task service of the calendar scenario: calls the Calendar and File APIs with kubemint tokens.

It authenticates as the OAuth2Client task-service (examples/calendar/40-task-service.yaml) with
the Secret the operator writes, task-service-credentials, mounted as a directory. One
TokenSource per API asks for a token for that API's audience with only the scopes this program
uses there; tokens are cached, renewed before they expire (and once on a 401), and the mounted
client secret is re-read at each renewal, so a rotated secret is used without a restart.

Each cycle schedules a task: it creates a calendar event, stores an attachment for it in the
File service, links the attachment to the event, and lists both to check they are there.
`--once` runs one cycle and exits 0 (success) or 1; otherwise it repeats every INTERVAL
seconds until SIGTERM. It logs what happened, never a token or the client secret.

Settings (environment):
    KUBEMINT_CREDENTIALS  the mounted Secret (/var/run/secrets/kubemint/task-service)
    CALENDAR_URL          the Calendar API (http://calendar-api.calendar.svc.cluster.local)
    CALENDAR_AUDIENCE     its audience (https://calendar.example.com)
    FILES_URL             the File API (http://files-api.files.svc.cluster.local)
    FILES_AUDIENCE        its audience (https://files.example.com)
    INTERVAL              seconds between cycles (60)
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from kubemint.client import Credentials, KubemintAuth, TokenError, TokenSource
from kubemint.client.credentials import CredentialsError

CALENDAR_SCOPES = "event.view event.create event.update"
FILES_SCOPES = "file.view file.create"
log = logging.getLogger("task-service")


@dataclass(frozen=True)
class Settings:
    credentials: Path
    calendar_url: str
    calendar_audience: str
    files_url: str
    files_audience: str
    interval: float

    @classmethod
    def from_environment(cls) -> Settings:
        env = os.environ.get
        return cls(
            credentials=Path(env("KUBEMINT_CREDENTIALS", "/var/run/secrets/kubemint/task-service")),
            calendar_url=env("CALENDAR_URL", "http://calendar-api.calendar.svc.cluster.local"),
            calendar_audience=env("CALENDAR_AUDIENCE", "https://calendar.example.com"),
            files_url=env("FILES_URL", "http://files-api.files.svc.cluster.local"),
            files_audience=env("FILES_AUDIENCE", "https://files.example.com"),
            interval=float(env("INTERVAL", "60")),
        )


class TaskService:
    """Two API clients, each with its own token source (audience and scopes)."""

    def __init__(self, settings: Settings, credentials: Credentials, stack: ExitStack) -> None:
        calendar_tokens = stack.enter_context(
            TokenSource(credentials, scope=CALENDAR_SCOPES, audience=settings.calendar_audience)
        )
        files_tokens = stack.enter_context(
            TokenSource(credentials, scope=FILES_SCOPES, audience=settings.files_audience)
        )
        self.calendar = stack.enter_context(
            httpx.Client(
                base_url=settings.calendar_url, auth=KubemintAuth(calendar_tokens), timeout=10
            )
        )
        self.files = stack.enter_context(
            httpx.Client(base_url=settings.files_url, auth=KubemintAuth(files_tokens), timeout=10)
        )

    def cycle(self) -> bool:
        """Schedule one task; True when every call succeeded."""
        task = f"task-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        try:
            event = _json(
                self.calendar.post(
                    "/api/events",
                    json={"title": f"Run {task}", "start": _in_minutes(30), "end": _in_minutes(60)},
                )
            )
            log.info("calendar: created event %s for %s", event["id"], task)
            attachment = _json(
                self.files.post(
                    "/v1/files",
                    json={
                        "name": f"{task}.txt",
                        "content": f"Notes for {task}\n",
                        "task": task,
                    },
                )
            )
            log.info("files: stored attachment %s for %s", attachment["id"], task)
            _json(
                self.calendar.put(
                    f"/api/events/{event['id']}", json={"attachments": [attachment["id"]]}
                )
            )
            log.info("calendar: attached %s to event %s", attachment["id"], event["id"])
            events = _json(self.calendar.get("/api/events"))["events"]
            files = _json(self.files.get("/v1/files"))["files"]
        except TokenError as exc:  # its message is the OAuth error code and description
            log.error("no token from kubemint: %s (HTTP %s)", exc, exc.status or "-")
            return False
        except CredentialsError as exc:
            log.error("cannot read the credentials: %s", exc)
            return False
        except httpx.HTTPStatusError as exc:
            log.error("%s", _describe(exc.response))
            return False
        except (httpx.TransportError, ValueError, KeyError, TypeError) as exc:
            log.error("call failed: %s: %s", type(exc).__name__, exc)
            return False
        if not any(e.get("id") == event["id"] for e in events):
            log.error("calendar: event %s is missing from the listing", event["id"])
            return False
        if not any(f.get("id") == attachment["id"] for f in files):
            log.error("files: attachment %s is missing from the listing", attachment["id"])
            return False
        log.info("cycle ok: %d events, %d files", len(events), len(files))
        return True


def _json(response: httpx.Response) -> dict[str, Any]:
    response.raise_for_status()
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError(f"{response.request.url}: the answer is not a JSON object")
    return body


def _describe(response: httpx.Response) -> str:
    """An HTTP error for the log: method, URL, status and the RFC 6750 challenge (no token)."""
    request = response.request
    text = f"{request.method} {request.url} answered {response.status_code}"
    challenge = response.headers.get("www-authenticate")
    return f"{text}: {challenge}" if challenge else text


def _in_minutes(minutes: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + minutes * 60))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--once", action="store_true", help="run one cycle; exit 0 or 1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is too chatty
    settings = Settings.from_environment()
    try:
        credentials = Credentials.from_directory(settings.credentials)
    except CredentialsError as exc:
        log.error("%s", exc)
        return 1
    log.info(
        "client %s, calendar %s (%s), files %s (%s)",
        credentials.client_id,
        settings.calendar_url,
        settings.calendar_audience,
        settings.files_url,
        settings.files_audience,
    )
    with ExitStack() as stack:
        service = TaskService(settings, credentials, stack)
        if args.once:
            return 0 if service.cycle() else 1
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop.is_set():
            service.cycle()
            stop.wait(settings.interval)
        log.info("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
