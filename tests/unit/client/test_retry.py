"""The helpers' retry policy: capped exponential backoff with jitter, one-line failure text."""

from __future__ import annotations

import httpx
import pytest

from kubemint.client.credentials import CredentialsError
from kubemint.client.retry import TokenError, backoff, describe, jittered, retry_delay


def test_the_ceiling_doubles_up_to_the_cap() -> None:
    assert [retry_delay(n, 5.0) for n in range(1, 7)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert retry_delay(0, 5.0) == 1.0


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.999999])
def test_jitter_stays_in_the_upper_half_of_each_step(rand: float) -> None:
    for failures in range(1, 8):
        ceiling = retry_delay(failures, 5.0)
        delay = backoff(failures, 5.0, lambda: rand)
        assert ceiling / 2 <= delay <= ceiling  # never longer than the cap: one retry to recover
    assert jittered(4.0, lambda: 0.0) == 2.0
    assert jittered(4.0, lambda: 0.5) == 3.0


def test_jitter_spreads_a_fleet_that_failed_together() -> None:
    import random

    draws = random.Random(7)  # noqa: S311 — jitter, not a secret
    delays = {round(backoff(4, 5.0, draws.random), 2) for _ in range(50)}
    assert len(delays) > 20
    assert min(delays) >= 2.5
    assert max(delays) <= 5.0


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "ConnectError: [Errno 111] Con"),
        (httpx.ReadTimeout(""), "ReadTimeout"),
        (
            TokenError("temporarily_unavailable", "restarting", 503),
            "the token endpoint answered temporarily_unavailable: restarting (HTTP 503)",
        ),
        (CredentialsError("cannot read /creds/client-secret"), "cannot read /creds/client-secret"),
        (OSError(28, "No space left on device"), "OSError: [Errno 28] No space left on device"),
        (RuntimeError("two\nlines"), "RuntimeError: two lines"),
    ],
)
def test_a_failure_is_described_on_one_line(exc: BaseException, expected: str) -> None:
    text = describe(exc)
    assert text.startswith(expected)
    assert "\n" not in text


def test_a_network_error_names_the_url_it_was_for() -> None:
    request = httpx.Request("POST", "http://kubemint.example:8080/oauth2/token")
    text = describe(httpx.ConnectError("refused", request=request))
    assert text == "ConnectError: refused (http://kubemint.example:8080/oauth2/token)"
