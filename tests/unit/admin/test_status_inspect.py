"""`status` from objects' status and the served JWKS; `inspect` of tokens the server issued."""

from __future__ import annotations

import datetime
from typing import Any

from kubemint.admin.inspect import inspect, key_state
from kubemint.admin.status import status
from kubemint.api.records import StoredKey
from kubemint.crypto import keys
from kubemint.crypto.jwt import Signer
from kubemint.store.snapshot import Snapshot

NOW = datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def _key_body(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "kubemint-system", "name": "default", "generation": 1},
        "status": {
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True"}],
            **status,
        },
    }


def test_status_lists_what_is_not_ready_stale_or_due_and_why_each_key_is_served() -> None:
    rule = {
        "metadata": {"namespace": "evil", "name": "grab", "generation": 1},
        "status": {"conditions": [{"type": "Ready", "status": "False",
                                   "reason": "AudienceConflict", "message": "owned by api"}]},
    }  # fmt: skip
    stale = {
        "metadata": {"namespace": "app", "name": "c", "generation": 3},
        "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}],
                   "nextSecretRotationAt": "2026-06-01T11:00:00Z"},
    }  # fmt: skip
    fresh = {"metadata": {"namespace": "app", "name": "new"}}
    key = _key_body(
        active={"kid": "a1", "activatedAt": "2026-05-01T00:00:00Z"},
        next={"kid": "n1", "publishedAt": "2026-05-01T00:00:00Z"},
        retired=[{"kid": "r1", "retiredAt": "2026-05-01T00:00:00Z",
                  "removeAfter": "2026-05-02T00:00:00Z"}],
        withdrawn=[{"kid": "w1"}],
        nextRotationAt="2026-06-02T00:00:00Z",
    )  # fmt: skip
    found = status(
        {"AccessRule": [rule], "OAuth2Client": [stale, fresh], "SigningKey": [key]},
        now=NOW,
        within=DAY,
        server_namespace="kubemint-system",
        jwks={"keys": [{"kid": k} for k in ("a1", "n1", "w1", "zz")]},
    )
    assert [(p.object, p.reason) for p in found.problems] == [
        ("evil/grab", "AudienceConflict"),
        ("app/c", "Stale"),
        ("app/new", "NotReconciled"),
    ]
    assert [(r.object, r.what, r.due) for r in found.rotations] == [
        ("app/c", "nextSecretRotationAt", True),
        ("kubemint-system/default", "nextRotationAt", False),
    ]
    states = {k.kid: (k.state, k.served) for k in found.keys}
    assert states == {
        "a1": ("active", True),
        "n1": ("next", True),
        "r1": ("retired", False),
        "w1": ("withdrawn", True),
    }
    assert found.unexplained == ["zz"]


def test_inspect_verifies_with_the_served_keys_and_names_the_signing_key() -> None:
    material = keys.generate("ES256")
    stored = StoredKey(material, "active", NOW, activated_at=NOW)
    now = NOW.timestamp()
    claims = {"iss": "https://kubemint.test", "sub": "tasks.app", "client_id": "tasks.app",
              "aud": "https://api.test", "scope": "read", "jti": "j1",
              "iat": int(now), "exp": int(now) + 600}  # fmt: skip
    token = Signer(stored.material).sign(claims)
    body = _key_body(active={"kid": material.kid})
    common: dict[str, Any] = {
        "issuer": "https://kubemint.test",
        "jwks": {"keys": [material.public_jwk()]},
        "snapshot": Snapshot(),
        "revocations": [],
        "now": now,
    }
    found = inspect(token, signing_keys=[body], **common)
    assert found.verified
    assert found.key == "SigningKey default (active)"
    assert found.revoked is False
    assert found.standing == "the client no longer exists"  # an empty view: not active
    assert not found.active
    # The same token when no SigningKey of the cluster has its kid: not verified.
    assert not inspect(token, signing_keys=[], **common).verified
    assert inspect(token, signing_keys=[body], **{**common, "issuer": "https://x"}).problem
    assert inspect("kmint_at_garbage", signing_keys=[body], **common).format == "unreadable"
    assert key_state(_key_body(withdrawn=[{"kid": "k"}], active={"kid": "k"}), "k") == "withdrawn"
