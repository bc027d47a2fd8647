"""One object that does not read (an overflowing duration, anything unexpected) costs only
itself: the rest of the view is built, and the skipped object is counted by kind."""

from __future__ import annotations

from typing import Any

import pytest

from kubemint.store import builder as builder_module
from kubemint.store.snapshot import Snapshot, build_snapshot

OVERFLOW = "99999999999999999999999999999h"
CREATED = "2026-11-22T10:00:00Z"


def _meta(namespace: str, name: str) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": name,
        "uid": f"uid-{name}",
        "creationTimestamp": CREATED,
    }


def _client(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": _meta(namespace, name), "spec": {"audiences": ["https://api.test"], **spec}}


def _account(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": _meta(namespace, name), "spec": {"clients": ["c"], **spec}}


def _rule(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    subjects = [{"kind": "OAuth2Client", "name": "good"}]
    return {
        "metadata": _meta(namespace, name),
        "spec": {"audience": f"https://{namespace}.test", "subjects": subjects, **spec},
    }


def _build(**kinds: list[dict[str, Any]]) -> Snapshot:
    args: dict[str, Any] = {"clients": [], "accounts": [], "rules": [], "signing_keys": []}
    args.update(kinds)
    return build_snapshot(server_namespace="s", secrets=[], **args)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"secret": {"overlap": OVERFLOW}}, id="secret.overlap"),
        pytest.param({"secret": {"rotateEvery": OVERFLOW}}, id="secret.rotateEvery"),
        pytest.param({"tokenLifetime": OVERFLOW}, id="tokenLifetime"),
        pytest.param({"tokenLifetime": "9" * 400 + "h"}, id="a duration that is inf as a float"),
    ],
)
def test_a_client_with_an_overflowing_duration_is_skipped_and_the_others_kept(
    spec: dict[str, Any],
) -> None:
    snapshot = _build(clients=[_client("evil", "bomb", **spec), _client("team", "good")])
    assert set(snapshot.clients) == {"team.good"}
    assert snapshot.skipped == {"OAuth2Client": 1}


@pytest.mark.parametrize("field", ["overlap", "rotateEvery"])
def test_an_account_with_an_overflowing_app_password_duration_is_skipped(field: str) -> None:
    bomb = _account("evil", "bomb", appPasswords={"secretName": "pw", field: OVERFLOW})
    snapshot = _build(accounts=[bomb, _account("team", "good")])
    assert set(snapshot.accounts) == {("team", "good")}
    assert snapshot.skipped == {"ServiceAccount": 1}


@pytest.mark.parametrize("field", ["every", "prePublish", "retainAfter"])
def test_a_signing_key_with_an_overflowing_rotation_is_skipped(field: str) -> None:
    bomb = {"metadata": _meta("s", "bomb"), "spec": {"rotation": {field: OVERFLOW}}}
    assert _build(signing_keys=[bomb]).skipped == {"SigningKey": 1}


def test_any_error_reading_one_object_skips_only_that_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not only the errors foreseen today: whatever a future field makes `from_body` raise."""
    real = builder_module.ClientSpec.from_body

    def from_body(body: dict[str, Any]) -> Any:
        if body["metadata"]["name"] == "bomb":
            raise OverflowError("what parse_duration raised before it was bounded")
        return real(body)

    monkeypatch.setattr(builder_module.ClientSpec, "from_body", from_body)
    snapshot = _build(clients=[_client("evil", "bomb"), _client("team", "good")])
    assert set(snapshot.clients) == {"team.good"}
    assert snapshot.skipped == {"OAuth2Client": 1}


def test_a_rule_that_does_not_read_is_skipped_and_the_others_grant() -> None:
    broken = _rule("evil", "broken")
    broken["spec"]["subjects"] = [{"name": "no kind"}]  # what the CRD would refuse
    snapshot = _build(rules=[broken, _rule("team", "grant", scopes=["read"])])
    assert set(snapshot.rules) == {"https://team.test"}
    assert snapshot.skipped == {"AccessRule": 1}


def test_clients_that_may_meet_a_condition_are_known_in_advance() -> None:
    """The server evaluates CEL off its event loop for exactly these clients."""
    clients = [
        _client("team", "good", audiences=["https://team.test"]),
        _client("team", "other", audiences=["https://other.test"]),
        _client("team", "federated", audiences=["https://other.test"]),
    ]
    rules = [_rule("team", "grant", when="request.grant_type == 'client_credentials'")]
    issuer = {"issuer": "https://ci.test", "when": "claims.ref == 'main'"}
    accounts = [_account("team", "ci", clients=["federated"], federation={"issuers": [issuer]})]
    snapshot = _build(clients=clients, rules=rules, accounts=accounts)
    assert snapshot.conditional_clients == {
        "team.good": {"request.grant_type == 'client_credentials'"},
        "team.federated": {"claims.ref == 'main'"},
    }
