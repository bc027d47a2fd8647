"""keep_fresh: retries through every kind of failure, follows the credentials' content, and
never leaves a partial file."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from kubemint.client.credentials import Credentials, CredentialsError
from kubemint.client.tokenfile import keep_all_fresh, keep_fresh, retry_delay
from kubemint.client.tokens import TokenError


class ScriptedSource:
    """A TokenSource stand-in: answers (or raises) from a script, then keeps the last answer."""

    def __init__(self, credentials: Credentials, script: list[object]) -> None:
        self.credentials = credentials
        self.script = script
        self.calls = 0
        self.refresh_in = 3600.0
        self._refresh_at = 0.0

    def clock(self) -> float:
        return time.time()

    @property
    def refresh_at(self) -> float:
        return self._refresh_at

    @property
    def expires_at(self) -> float | None:
        return self._refresh_at + 10 if self.calls else None

    def token(self, force: bool = False) -> str:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(step, BaseException):
            raise step
        self._refresh_at = self.clock() + self.refresh_in
        return str(step)


@pytest.fixture
def credentials(tmp_path: Path) -> Credentials:
    secret = tmp_path / "client-secret"
    secret.write_text("one")
    return Credentials(token_url="http://x/oauth2/token", client_id="a.b", secret_file=secret)


@contextmanager
def _watching(source: ScriptedSource, out: Path) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(
        target=keep_fresh, args=(source, out, stop), kwargs={"retry": 0.05, "poll": 0.02}
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def _until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_retry_delays_double_up_to_the_cap() -> None:
    assert [retry_delay(n, 5.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_every_failure_is_retried_and_the_file_is_written_once_a_token_comes(
    credentials: Credentials, tmp_path: Path
) -> None:
    request = httpx.Request("POST", credentials.token_url)
    failures: list[object] = [
        httpx.ConnectError("refused", request=request),
        httpx.RemoteProtocolError("closed", request=request),
        httpx.ReadTimeout("slow", request=request),
        TokenError("temporarily_unavailable", status=503),
        CredentialsError("cannot read client-secret"),
        OSError("disk"),
    ]
    source = ScriptedSource(credentials, [*failures, "a.b.c"])
    out = tmp_path / "token"
    with _watching(source, out):
        _until(out.exists)
    assert out.read_text() == "a.b.c"
    assert source.calls == len(failures) + 1


def test_a_change_of_the_mounted_secret_gets_a_new_token_at_once(
    credentials: Credentials, tmp_path: Path
) -> None:
    source = ScriptedSource(credentials, ["a.b.1", "a.b.2"])
    out = tmp_path / "token"
    with _watching(source, out):
        _until(out.exists)
        assert out.read_text() == "a.b.1"
        time.sleep(0.2)
        assert source.calls == 1  # the token is good for an hour: no second request
        assert credentials.secret_file is not None
        credentials.secret_file.write_text("two")  # what the kubelet's swap looks like
        _until(lambda: out.read_text() == "a.b.2")
    assert source.calls == 2


def test_the_fingerprint_follows_content_and_survives_a_missing_file(
    credentials: Credentials,
) -> None:
    first = credentials.fingerprint()
    assert credentials.fingerprint() == first
    assert credentials.secret_file is not None
    credentials.secret_file.write_text("two")
    second = credentials.fingerprint()
    assert second != first
    credentials.secret_file.unlink()
    assert credentials.fingerprint() not in (first, second)


def test_one_watcher_keeps_several_files_fresh_and_a_failing_one_costs_only_itself(
    credentials: Credentials, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    request = httpx.Request("POST", credentials.token_url)
    good = ScriptedSource(credentials, ["a.b.good"])
    refused = TokenError("invalid_scope", "scope 'admin' is not granted", 400)
    bad = ScriptedSource(credentials, [refused, refused, refused, "a.b.late"])
    flaky = ScriptedSource(credentials, [httpx.ConnectError("refused", request=request), "a.b.c"])
    paths = [tmp_path / "good", tmp_path / "bad", tmp_path / "flaky"]
    stop = threading.Event()
    thread = threading.Thread(
        target=keep_all_fresh,
        args=(list(zip([good, bad, flaky], paths, strict=True)), stop),
        kwargs={"retry": 0.05, "poll": 0.02, "rand": lambda: 0.0},
    )
    with caplog.at_level("WARNING", logger="kubemint.tokenfile"):
        thread.start()
        try:
            _until(lambda: all(p.exists() for p in paths))
        finally:
            stop.set()
            thread.join(5)
    assert [p.read_text() for p in paths] == ["a.b.good", "a.b.late", "a.b.c"]
    assert good.calls == 1
    assert bad.calls == 4
    assert flaky.calls == 2
    failures = [r for r in caplog.records if "could not refresh" in r.getMessage()]
    assert len(failures) == 4
    for record in failures:  # one line each, what failed, no traceback
        assert "\n" not in record.getMessage()
        assert record.exc_info is None
    assert "invalid_scope: scope 'admin' is not granted (HTTP 400)" in failures[0].getMessage()


def test_the_file_keeps_its_token_while_refreshes_fail(
    credentials: Credentials, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    request = httpx.Request("POST", credentials.token_url)
    down = httpx.ConnectError("[Errno 111] Connection refused", request=request)
    source = ScriptedSource(credentials, ["a.b.1", down, down, down, "a.b.2"])
    source.refresh_in = 0.0  # due again at once (every second at most)
    out = tmp_path / "token"
    with caplog.at_level("WARNING", logger="kubemint.tokenfile"), _watching(source, out):
        _until(out.exists)
        _until(lambda: source.calls >= 3)
        assert out.read_text() == "a.b.1"  # kept through the failures
        _until(lambda: out.read_text() == "a.b.2", timeout=10)
    kept = [r.getMessage() for r in caplog.records if "could not refresh" in r.getMessage()]
    assert len(kept) == 3, kept
    assert all("kept the current token" in m for m in kept), kept
