"""Keep a token file fresh for programs in any language: rewritten atomically before expiry.

Readers never see a partial file: the new token is written to a temporary file in the same
directory (mode 0600) and renamed over the old one.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

from kubemint.client.tokens import TokenError, TokenSource

log = logging.getLogger("kubemint.tokenfile")


def write_atomically(path: Path, value: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def keep_fresh(source: TokenSource, path: Path, stop: threading.Event, retry: float = 5.0) -> None:
    """Write a token now and again before each expiry, until `stop` is set."""
    while not stop.is_set():
        try:
            write_atomically(path, source.token(force=True))
            wait = max(1.0, source.refresh_at - source.clock())
        except (TokenError, OSError) as exc:
            log.warning("could not refresh %s: %s; retrying", path, exc)
            wait = retry
        stop.wait(wait)
