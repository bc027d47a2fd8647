"""Keep token files fresh for programs in any language: rewritten atomically before expiry.

Readers never see a partial file: the new token is written to a temporary file in the same
directory (mode 0600) and renamed over the old one. One watcher can keep several files fresh
from one credential, each with its own audience and scopes (one `TokenSource` per file).

The mounted credentials are watched too. The kubelet updates a mounted Secret (or a projected
token) by writing the new files into a fresh directory and swapping the `..data` symlink, some
seconds to a minute or more after the API object changed; the watcher reads the files' content
every `poll` seconds and, when it changed, gets new tokens at once with the new credentials.
A rotated client secret is so proven while the previous one still works (its `overlap`), and a
refusal shows in the log long before the old secret expires.

Failures (the token server restarting or away, a network blip, a refusal) never end the
watch: each file keeps its last good token, one line on the log says what failed, and the
request is retried with backoff and jitter (about 1, 2, 4 seconds, then every `retry`
seconds at most), so the file is renewed within one retry of the server coming back.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubemint.client.retry import RETRIABLE, backoff, describe, retry_delay
from kubemint.client.tokens import TokenSource

__all__ = ["RETRIABLE", "keep_all_fresh", "keep_fresh", "retry_delay", "write_atomically"]

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


@dataclass
class _File:
    source: TokenSource
    path: Path
    seen: str  # the credentials' fingerprint the current token was obtained with
    due: float  # when the next token is needed
    failures: int = 0


def keep_fresh(
    source: TokenSource,
    path: Path,
    stop: threading.Event,
    retry: float = 5.0,
    poll: float = 2.0,
    rand: Callable[[], float] = random.random,
) -> None:
    """Write a token to `path` now, again before each expiry and whenever the credentials'
    content changes, until `stop` is set."""
    keep_all_fresh([(source, path)], stop, retry=retry, poll=poll, rand=rand)


def keep_all_fresh(
    files: Sequence[tuple[TokenSource, Path]],
    stop: threading.Event,
    retry: float = 5.0,
    poll: float = 2.0,
    rand: Callable[[], float] = random.random,
) -> None:
    """`keep_fresh` for several files at once, each retried on its own schedule."""
    watched = [
        _File(source, path, source.credentials.fingerprint(), source.clock())
        for source, path in files
    ]
    while not stop.is_set():
        for file in watched:
            _step(file, retry, rand)
        wait = min(file.due - file.source.clock() for file in watched)
        stop.wait(max(0.05, min(poll, wait)))


def _step(file: _File, retry: float, rand: Callable[[], float]) -> None:
    source = file.source
    current = source.credentials.fingerprint()
    changed = current != file.seen
    if not changed and source.clock() < file.due:
        return
    file.seen = current  # a change is acted on once; a failure is retried by `due`
    try:
        write_atomically(file.path, source.token(force=True))
    except Exception as exc:  # never the end of the watch: retried, said in one line
        file.failures += 1
        delay = backoff(file.failures, retry, rand)
        file.due = source.clock() + delay
        kept = ""
        expires = source.expires_at
        if expires is not None and file.path.exists():
            left = expires - source.clock()
            kept = (
                f"; kept the current token (valid {left:.0f}s more)"
                if left > 0
                else ("; the token in the file has expired")
            )
        log.warning(
            "could not refresh %s: %s; retrying in %ss (attempt %d failed)%s",
            file.path,
            describe(exc),
            f"{delay:.1f}",
            file.failures,
            kept,
        )
        return
    if changed:
        log.info("the credentials changed; %s holds a token obtained with them", file.path)
    elif file.failures:
        log.info("%s refreshed again after %d failed attempts", file.path, file.failures)
    file.failures = 0
    # At least a second apart, even for a token whose margin is its whole life.
    file.due = max(source.refresh_at, source.clock() + 1.0)
