"""The workload helpers through a token-server outage: the real `kubemint token-server` is
stopped and started again while a `kubemint token --watch` sidecar (two files, two
audiences, one credential), a `TokenSource` and an `AsyncTokenSource` keep asking for tokens
as an app would, and a `Verifier` keeps checking them.

What is simulated, so that it costs seconds and not minutes: the client's tokens live 60 s
and every helper renews them with 50 s left (`--renew-before 50` / `renew_before=50`), i.e. every
10 s. The server goes away just after the helpers got their tokens and stays away until every
helper has failed at least three renewal attempts (about 13 s from the tokens' issue), then
restarts (its view is rebuilt from the API server before /readyz says 200): some 20 s in all,
twice the renewal interval and a third of the tokens' lifetime, with time to spare for a slow
restart on a loaded machine. Scaled to one-hour tokens renewed as often, that is a 20-minute
outage; `make bench-outage` runs a real 3-minute one against 10-minute tokens.

The tokens must stay in place and valid all along, each failure must be one line on the
sidecar's stderr, and every helper must hold a new token within one retry (the 5 s backoff
cap) of the server's return.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from kubemint.client import AsyncTokenSource, Credentials, TokenSource
from kubemint.devcluster.components import wait_for_http
from kubemint.verify import Verifier
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import apply, custom, secret_data, wait_for, wait_ready

LIFETIME = 60.0
RENEW_BEFORE = 50.0  # renewed every 10 s
RETRY_CAP = 5.0  # the helpers' default backoff cap: the longest wait once the server is back
FAILED_ATTEMPTS = 3  # each helper fails at least this many renewals during the outage
SLACK = 2.0  # polling granularity (0.2 s here, 0.05 s in the watcher) and a loaded machine


def _exp(token: str) -> float:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return float(claims["exp"])


@dataclass
class Seen:
    """What one helper handed out, polled as an app would: (wall time, token or error)."""

    name: str
    samples: list[tuple[float, str | BaseException]] = field(default_factory=list)

    def tokens(self) -> list[str]:
        return [v for _, v in self.samples if isinstance(v, str)]

    def last(self) -> str | None:
        tokens = self.tokens()
        return tokens[-1] if tokens else None

    def first_after(self, token: str) -> tuple[float, str] | None:
        """When this helper first handed out something other than `token`, after it."""
        passed = False
        for at, value in self.samples:
            if value == token:
                passed = True
            elif passed and isinstance(value, str):
                return at, value
        return None


class Pollers:
    """A TokenSource in a thread and an AsyncTokenSource on its own event loop, each asked
    for a token every 0.2 s."""

    def __init__(self, credentials: Credentials, audience: str) -> None:
        options = {"audience": audience, "scope": "read", "renew_before": RENEW_BEFORE}
        self.sync = TokenSource(credentials, **options)  # type: ignore[arg-type]
        self.async_ = AsyncTokenSource(credentials, **options)  # type: ignore[arg-type]
        self.seen = {"TokenSource": Seen("TokenSource"), "AsyncTokenSource": Seen("Async")}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._poll_sync, daemon=True),
            threading.Thread(target=lambda: asyncio.run(self._poll_async()), daemon=True),
        ]

    def __enter__(self) -> Pollers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        self.sync.close()

    def _poll_sync(self) -> None:
        seen = self.seen["TokenSource"]
        while not self._stop.is_set():
            try:
                value: str | BaseException = self.sync.token()
            except Exception as exc:
                value = exc
            seen.samples.append((time.time(), value))
            self._stop.wait(0.2)

    async def _poll_async(self) -> None:
        seen = self.seen["AsyncTokenSource"]
        async with self.async_:
            while not self._stop.is_set():
                try:
                    value: str | BaseException = await self.async_.token()
                except Exception as exc:
                    value = exc
                seen.samples.append((time.time(), value))
                await asyncio.sleep(0.2)


class FileReader:
    """Reads the sidecar's token files all the time, as apps in other languages would."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self.seen = {name: Seen(name) for name in paths}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FileReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, path in self.paths.items():
                with suppress(FileNotFoundError):
                    self.seen[name].samples.append((time.time(), path.read_text()))
            self._stop.wait(0.05)


@pytest.fixture
def client(operator: RunningOperator, namespace: str, tmp_path: Path) -> tuple[Path, str, str]:
    """One OAuth2Client with 40 s tokens, granted `read` on one audience and `write` on
    another; its Secret written out as the kubelet would mount it."""
    reader, writer = f"https://{namespace}.reader.test", f"https://{namespace}.writer.test"
    apply(
        operator.cluster,
        custom(
            "OAuth2Client",
            "app",
            namespace,
            audiences=[reader, writer],
            scopes=["read", "write"],
            tokenLifetime=f"{LIFETIME:.0f}s",
        ),
        *(
            custom(
                "AccessRule",
                name,
                namespace,
                audience=audience,
                scopes=[scope],
                subjects=[{"kind": "OAuth2Client", "name": "app"}],
            )
            for name, audience, scope in (("read", reader, "read"), ("write", writer, "write"))
        ),
    )
    wait_ready(operator.cluster, "OAuth2Client", namespace, "app")
    volume = tmp_path / "credentials"
    volume.mkdir()
    for key, value in (secret_data(operator.cluster, namespace, "app-credentials") or {}).items():
        (volume / key).write_text(value)
    return volume, reader, writer


@pytest.fixture
def sidecar(
    client: tuple[Path, str, str], tmp_path: Path
) -> Iterator[tuple[dict[str, Path], Path]]:
    volume, reader, writer = client
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    files = {"reader file": tokens / "reader", "writer file": tokens / "writer"}
    log = tmp_path / "sidecar.log"
    argv = [
        *(sys.executable, "-m", "kubemint", "token", "--credentials", str(volume), "--watch"),
        *("--renew-before", f"{RENEW_BEFORE:.0f}"),
        *("--out", f"path={files['reader file']},audience={reader},scope=read"),
        *("--out", f"path={files['writer file']},audience={writer},scope=write"),
    ]
    with log.open("wb") as sink, subprocess.Popen(argv, stderr=sink) as proc:
        try:
            yield files, log
        finally:
            proc.terminate()
            assert proc.wait(timeout=15) == 0, log.read_text()


def test_the_helpers_keep_valid_tokens_through_an_outage_and_recover_within_one_retry(
    token_server: RunningServer,
    client: tuple[Path, str, str],
    sidecar: tuple[dict[str, Path], Path],
) -> None:
    volume, reader, writer = client
    files, log = sidecar
    credentials = Credentials.from_directory(volume)
    verifiers = {a: Verifier(issuer=token_server.issuer, audience=a) for a in (reader, writer)}
    # The verifier honours the JWKS max-age the server sends.
    jwks = httpx.get(token_server.issuer + "/oauth2/jwks", timeout=10)
    max_age = int(jwks.headers["cache-control"].split("max-age=")[1])
    audience_of = {"reader file": reader, "writer file": writer}
    audience_of |= {"TokenSource": reader, "AsyncTokenSource": reader}

    with Pollers(credentials, reader) as pollers, FileReader(files) as reader_files:
        seen = {**reader_files.seen, **pollers.seen}
        wait_for(lambda: all(s.last() for s in seen.values()), "every helper's first token")
        before = {name: str(s.last()) for name, s in seen.items()}
        for name, token in before.items():
            verifiers[audience_of[name]].verify(token)  # and the verifiers cache the JWKS
        assert verifiers[reader].jwks.fresh_for == min(300, max(10, max_age))

        # -- the outage -----------------------------------------------------------------------
        token_server.process.stop()
        stopped = time.time()
        try:
            failed = {
                "reader file": lambda: log.read_text().count(
                    f"could not refresh {files['reader file']}"
                ),
                "writer file": lambda: log.read_text().count(
                    f"could not refresh {files['writer file']}"
                ),
                "TokenSource": lambda: pollers.sync.failures,
                "AsyncTokenSource": lambda: pollers.async_.failures,
            }
            wait_for(
                lambda: all(count() >= FAILED_ATTEMPTS for count in failed.values()),
                f"every helper to fail {FAILED_ATTEMPTS} renewals",
                timeout=LIFETIME,
            )
            for name, s in seen.items():  # kept, and still valid
                assert s.last() == before[name], f"{name} lost its token during the outage"
                assert _exp(before[name]) > time.time(), f"{name}'s token expired"
                verifiers[audience_of[name]].verify(before[name])  # cached keys: no issuer needed
            for name, path in files.items():
                assert path.read_text() == before[name]
        finally:
            token_server.process.start()
            wait_for_http(token_server.issuer + "/readyz", token_server.process, timeout=LIFETIME)
        back = time.time()
        outage = back - stopped

        # -- recovery within one retry --------------------------------------------------------
        recovered = wait_for(
            lambda: (
                all(s.first_after(before[n]) for n, s in seen.items())
                and {n: s.first_after(before[n]) for n, s in seen.items()}
            ),
            "every helper's first token after the server's return",
            timeout=RETRY_CAP + 15,
        )

    text = log.read_text()
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if "could not refresh" in line]
    assert all("ConnectError" in line and "kept the current token" in line for line in lines), lines
    for name, (at, token) in recovered.items():
        assert at - back <= RETRY_CAP + SLACK, (
            f"{name} got a new token {at - back:.1f}s after the server was back ({outage:.0f}s "
            f"outage)"
        )
        verifiers[audience_of[name]].verify(token)
    for name, s in seen.items():  # never an error, never an expired token, at any moment
        errors = [v for _, v in s.samples if isinstance(v, BaseException)]
        assert not errors, f"{name}: {errors[:1]}"
        expired = [at for at, v in s.samples if isinstance(v, str) and _exp(v) <= at]
        assert not expired, f"{name} handed out an expired token"
        assert all(v.count(".") == 2 for v in s.tokens()), f"{name}: a partial token"
    print(
        f"outage {outage:.1f}s of a {LIFETIME:.0f}s token; recovered after "
        + ", ".join(f"{n} {at - back:.1f}s" for n, (at, _) in recovered.items())
    )
