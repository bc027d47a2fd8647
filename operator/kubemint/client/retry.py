"""How the workload helpers retry: exponential backoff with jitter, and one-line failure text.

A failed renewal is retried after 1, 2, 4, … seconds up to a cap, each delay drawn from the
upper half of its step (so a fleet of pods that lost the token server together does not come
back in lockstep, yet no retry waits longer than the cap: the server is asked again at most
`cap` seconds after it returns).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx

from kubemint.client.credentials import CredentialsError


class TokenError(RuntimeError):
    """The token endpoint refused; carries its OAuth error code (never a secret)."""

    def __init__(self, error: str, description: str = "", status: int = 0) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.status = status


# What a renewal may raise that a later attempt can cure: the token server away or refusing
# for now, the network, a credentials file the kubelet is swapping.
RETRIABLE: tuple[type[BaseException], ...] = (
    TokenError,
    CredentialsError,
    httpx.HTTPError,
    OSError,
)


def retry_delay(failures: int, cap: float) -> float:
    """The ceiling of the wait after `failures` failures in a row: 1, 2, 4, … ≤ cap."""
    return float(min(cap, 2.0 ** max(0, failures - 1)))


def jittered(delay: float, rand: Callable[[], float] = random.random) -> float:
    """`delay` drawn uniformly from [delay/2, delay]: spread out, never longer."""
    return delay * (0.5 + 0.5 * rand())


def backoff(failures: int, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before the next attempt after `failures` failures in a row."""
    return jittered(retry_delay(failures, cap), rand)


def describe(exc: BaseException) -> str:
    """What failed, on one line: the token endpoint's OAuth error, or the kind of network or
    file failure with its message (some httpx errors have none, e.g. a read timeout)."""
    if isinstance(exc, TokenError):
        text = f"the token endpoint answered {exc}"
        if exc.status:
            text += f" (HTTP {exc.status})"
    elif isinstance(exc, httpx.HTTPError):
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        url = getattr(getattr(exc, "_request", None), "url", None)
        if url is not None:
            text += f" ({url})"
    elif isinstance(exc, CredentialsError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())  # a message with newlines would break the one-line log
