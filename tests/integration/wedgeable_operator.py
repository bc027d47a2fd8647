"""`kubemint operator`, unchanged, plus a way for a test to wedge it: SIGUSR1 blocks the main
thread (the one running the event loop) for good, as a handler stuck in blocking code would.
Started as a script by test_operator_observability.py; it is not a test module."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from kubemint.cli import main


def wedge(signum: int, frame: FrameType | None) -> None:
    threading.Event().wait()  # Python runs signal handlers in the main thread: the loop's


signal.signal(signal.SIGUSR1, wedge)
raise SystemExit(main(["operator"]))
