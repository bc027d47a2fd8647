"""The failed-authentication policy: per-source limits before, per-client throttling after the
credential is checked (a correct credential always passes)."""

from __future__ import annotations

import pytest

from kubemint.oauth.client_auth import TokenRequest
from kubemint.oauth.errors import InvalidClient, TooManyRequests, UnauthorizedClient
from kubemint.oauth.ratelimit import AuthLimits, FailureLimiter, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limits(clock: Clock, per_client: int = 3, per_source: int = 5) -> AuthLimits:
    return AuthLimits(
        FailureLimiter(per_client, clock=clock), FailureLimiter(per_source, clock=clock)
    )


def _request(client_id: str, source: str) -> TokenRequest:
    return TokenRequest({"client_id": client_id}, source=source)


def _fail() -> str:
    raise InvalidClient("client authentication failed", reason="wrong client secret")


def _outcome(limits: AuthLimits, client_id: str, source: str, correct: bool) -> str:
    try:
        return limits.guard(_request(client_id, source), (lambda: "ok") if correct else _fail)
    except TooManyRequests:
        return "429"
    except InvalidClient:
        return "401"


def test_a_correct_credential_passes_however_many_failures_others_charged_to_its_id() -> None:
    limits = _limits(Clock())
    failures = [_outcome(limits, "tasks.app", f"10.0.0.{i}", False) for i in range(10)]
    assert failures == ["401"] * 3 + ["429"] * 7
    assert _outcome(limits, "tasks.app", "10.0.1.1", True) == "ok"


def test_a_source_over_its_limit_is_refused_before_the_credential_is_checked() -> None:
    limits = _limits(Clock())
    for i in range(5):
        _outcome(limits, f"tasks.c{i}", "10.0.0.1", False)
    checked = []

    def authenticate() -> str:
        checked.append(True)
        return "ok"

    with pytest.raises(TooManyRequests) as refused:
        limits.guard(_request("tasks.app", "10.0.0.1"), authenticate)
    assert checked == []
    assert refused.value.retry_after == 61
    assert refused.value.reason == "source over its limit"
    assert _outcome(limits, "tasks.app", "10.0.0.2", True) == "ok"  # other sources pass


def test_limits_reset_when_the_window_has_passed() -> None:
    clock = Clock()
    limits = _limits(clock)
    for _ in range(5):
        _outcome(limits, "tasks.app", "10.0.0.1", False)
    assert _outcome(limits, "tasks.app", "10.0.0.1", True) == "429"
    clock.now += 60
    assert _outcome(limits, "tasks.app", "10.0.0.1", False) == "401"


def test_a_throttled_failure_keeps_the_reason_for_the_audit_log() -> None:
    limits = _limits(Clock(), per_client=1)
    _outcome(limits, "tasks.app", "10.0.0.1", False)
    with pytest.raises(TooManyRequests) as throttled:
        limits.guard(_request("tasks.app", "10.0.0.2"), _fail)
    assert throttled.value.reason == "wrong client secret; client id over its failure limit"
    assert throttled.value.retry_after == 61


def test_other_errors_are_not_failures_of_authentication() -> None:
    limits = _limits(Clock(), per_client=1, per_source=1)

    def disabled() -> str:
        raise UnauthorizedClient("the client is disabled")  # proved its identity first

    for _ in range(3):
        with pytest.raises(UnauthorizedClient):
            limits.guard(_request("tasks.app", "10.0.0.1"), disabled)
    assert _outcome(limits, "tasks.app", "10.0.0.1", True) == "ok"


def test_claimed_ids_are_kept_as_fixed_size_digests() -> None:
    assert len(client_key("x" * 60_000)) == len(client_key("")) == 64
    assert client_key("tasks.app") != client_key("tasks.app2")
    assert client_key("\udcff") != client_key("")  # an unpaired surrogate does not crash
