"""Keep a token file fresh for programs in any language: rewritten atomically before expiry.

Readers never see a partial file: the new token is written to a temporary file in the same
directory (mode 0600) and renamed over the old one.

The mounted credentials are watched too. The kubelet updates a mounted Secret (or a projected
token) by writing the new files into a fresh directory and swapping the `..data` symlink, some
seconds to a minute or more after the API object changed; the watcher reads the files' content
every `poll` seconds and, when it changed, gets a new token at once with the new credentials.
A rotated client secret is so proven while the previous one still works (its `overlap`), and a
refusal shows in the log long before the old secret expires. Failures (the token server
restarting, a network blip, a refusal) never end the watch: the file keeps the last good token
and the request is retried after 1, 2 and 4 seconds, then every `retry` seconds.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

import httpx

from kubemint.client.credentials import CredentialsError
from kubemint.client.tokens import TokenError, TokenSource

log = logging.getLogger("kubemint.tokenfile")

# What a refresh may raise that the next attempt can cure.
RETRIABLE: tuple[type[BaseException], ...] = (
    TokenError,
    CredentialsError,
    httpx.HTTPError,
    OSError,
)


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


def retry_delay(failures: int, cap: float) -> float:
    """Seconds before the next attempt after `failures` failures in a row: 1, 2, 4, … ≤ cap."""
    return float(min(cap, 2.0 ** max(0, failures - 1)))


def keep_fresh(
    source: TokenSource,
    path: Path,
    stop: threading.Event,
    retry: float = 5.0,
    poll: float = 2.0,
) -> None:
    """Write a token now, again before each expiry and whenever the credentials' content
    changes, until `stop` is set."""
    seen = source.credentials.fingerprint()
    due = source.clock()  # when the next token is needed
    failures = 0
    while not stop.is_set():
        current = source.credentials.fingerprint()
        changed = current != seen
        if changed or source.clock() >= due:
            seen = current  # a change is acted on once; a failure is retried by `due`
            try:
                write_atomically(path, source.token(force=True))
            except RETRIABLE as exc:
                failures += 1
                due = source.clock() + retry_delay(failures, retry)
                log.warning("could not refresh %s: %s; retrying", path, exc)
            else:
                if changed:
                    log.info("the credentials changed; %s holds a token obtained with them", path)
                elif failures:
                    log.info("%s refreshed again after %d failed attempts", path, failures)
                failures = 0
                # At least a second apart, even for a token whose margin is its whole life.
                due = max(source.refresh_at, source.clock() + 1.0)
        stop.wait(max(0.05, min(poll, due - source.clock())))
