"""The token server's view leaves withdrawn keys out by itself: from the SigningKey's
kubemint.io/withdraw annotation and status.withdrawn as soon as it sees them, before (or
without) the operator rewriting the Secret, and when a restored Secret brings one back."""

from __future__ import annotations

import datetime
import time
from typing import Any

from kubemint.api.records import StoredKey
from kubemint.crypto import custody, keys
from kubemint.crypto.jwt import InvalidJWT, Signer
from kubemint.crypto.opaque import OpaqueKey
from kubemint.oauth.introspection import read_token
from tests.unit.records import build, keys_secret

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
NS = "kubemint-system"
ISSUER = "https://kubemint.test"
ACTIVE, NEXT, RETIRED = keys.generate("ES256"), keys.generate("ES256"), keys.generate("ES256")
STORED = (
    StoredKey(ACTIVE, "active", NOW, activated_at=NOW),
    StoredKey(NEXT, "next", NOW),
    StoredKey(custody.verify_only(RETIRED), "retired", NOW, retired_at=NOW, remove_after=NOW),
)


def _snapshot(annotation: str | None = None, status: dict[str, Any] | None = None) -> Any:
    body: dict[str, Any] = {"metadata": {"namespace": NS, "name": "default"}, "spec": {}}
    if annotation is not None:
        body["metadata"]["annotations"] = {"kubemint.io/withdraw": annotation}
    if status is not None:
        body["status"] = status
    return build(
        clients=[],
        accounts=[],
        rules=[],
        signing_keys=[body],
        secrets=[keys_secret("default", STORED)],
    )


def _kids(snapshot: Any) -> set[str]:
    return {k["kid"] for k in snapshot.jwks()["keys"]}


def _token(material: keys.KeyMaterial) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "exp": now + 60, "iat": now, "jti": "j"}
    return Signer(material).sign(claims)


def test_every_key_verifies_until_one_is_withdrawn() -> None:
    snapshot = _snapshot()
    assert _kids(snapshot) == {ACTIVE.kid, NEXT.kid, RETIRED.kid}
    assert read_token(_token(ACTIVE), snapshot, ISSUER, time.time())["jti"] == "j"


def test_the_annotation_takes_the_active_and_next_keys_out_and_nothing_signs() -> None:
    snapshot = _snapshot(annotation=ACTIVE.kid)
    assert _kids(snapshot) == {RETIRED.kid}
    ring = snapshot.keys["default"]
    assert ring.signer is None  # the token endpoint answers 503 until a fresh key is stored
    assert ACTIVE.kid not in ring.opaque
    for material in (ACTIVE, NEXT):
        try:
            read_token(_token(material), snapshot, ISSUER, time.time())
        except InvalidJWT:
            continue
        raise AssertionError(f"a token of withdrawn key {material.kid} was read")
    sealed = OpaqueKey(ACTIVE).seal({"iss": ISSUER, "exp": int(time.time()) + 60})
    try:
        read_token(sealed, snapshot, ISSUER, time.time())
    except InvalidJWT:
        pass
    else:
        raise AssertionError("an opaque token of the withdrawn key was read")


def test_a_recorded_withdrawal_holds_when_a_restored_secret_brings_the_key_back() -> None:
    snapshot = _snapshot(status={"withdrawn": [{"kid": RETIRED.kid, "withdrawnAt": "x"}]})
    assert _kids(snapshot) == {ACTIVE.kid, NEXT.kid}
    assert snapshot.keys["default"].signer is not None


def test_an_invalid_annotation_withdraws_nothing_as_the_operator_does() -> None:
    snapshot = _snapshot(annotation="not/a/kid")
    assert _kids(snapshot) == {ACTIVE.kid, NEXT.kid, RETIRED.kid}
