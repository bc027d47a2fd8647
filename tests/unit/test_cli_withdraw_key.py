"""`kubemint withdraw-key`: the patch that adds kids to a SigningKey's withdraw annotation."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from kubemint.api.signingkey import withdraw_request, withdrawal_patch
from kubemint.cli import main

BODY: dict[str, Any] = {
    "apiVersion": "kubemint.io/v1alpha1",
    "kind": "SigningKey",
    "metadata": {"name": "default", "annotations": {"kubemint.io/withdraw": "old1"}},
    "status": {
        "active": {"kid": "act"},
        "next": {"kid": "nxt"},
        "retired": [{"kid": "r1"}, {"kid": "r2"}],
    },
}


def _kids(patch: dict[str, Any]) -> tuple[str, ...]:
    return withdraw_request(patch["metadata"]["annotations"])


def test_active_names_the_active_and_next_kids_and_keeps_the_ones_already_named() -> None:
    patch = withdrawal_patch(BODY, (), active=True, retired=False)
    assert _kids(patch) == ("old1", "act", "nxt")


def test_retired_and_explicit_kids_are_added_once() -> None:
    patch = withdrawal_patch(BODY, ("r1", "x"), active=False, retired=True)
    assert _kids(patch) == ("old1", "r1", "x", "r2")


def test_nothing_to_withdraw_is_an_error() -> None:
    with pytest.raises(ValueError, match="name the kids"):
        withdrawal_patch(BODY, (), active=False, retired=False)
    with pytest.raises(ValueError, match=r"status\.active\.kid"):
        withdrawal_patch({"kind": "SigningKey"}, (), active=True, retired=False)


def test_the_command_prints_a_merge_patch_and_refuses_other_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(BODY)))
    assert main(["withdraw-key", "--active"]) == 0
    patch = json.loads(capsys.readouterr().out)
    assert patch == {"metadata": {"annotations": {"kubemint.io/withdraw": "old1,act,nxt"}}}
    monkeypatch.setattr("sys.stdin", io.StringIO('{"kind": "Secret"}'))
    assert main(["withdraw-key", "kid"]) == 2
    assert "must be a SigningKey" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(BODY)))
    assert main(["withdraw-key", "not/a/kid"]) == 2
    assert "is not a key id" in capsys.readouterr().err
