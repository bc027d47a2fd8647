"""A SigningKey's `use` may be omitted (the CRD has no default for it): the operator and the
token server infer it from the algorithm, RSA-OAEP-256 → enc, everything else → sig."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kubemint.api.records import StoredKey
from kubemint.api.signingkey import SigningKeySpec, key_use
from kubemint.crypto import keys
from kubemint.reconcile.signingkeys import plan_rotation
from tests.unit.records import build, keys_secret

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("spec", "use"),
    [
        ({"algorithm": "RSA-OAEP-256"}, "enc"),
        ({"algorithm": "ES256"}, "sig"),
        ({"algorithm": "RS256"}, "sig"),
        ({"algorithm": "EdDSA"}, "sig"),
        ({}, "sig"),
        ({"algorithm": "RSA-OAEP-256", "use": "enc"}, "enc"),
        ({"algorithm": "PS256", "use": "sig"}, "sig"),
    ],
)
def test_the_use_is_spec_use_or_what_the_algorithm_implies(spec: dict[str, Any], use: str) -> None:
    assert key_use(spec) == use
    assert SigningKeySpec.from_body({"metadata": {"name": "k"}, "spec": spec}).use == use


def test_status_reports_the_use_of_the_active_key() -> None:
    spec = SigningKeySpec.from_body({"metadata": {"name": "k"}, "spec": {"algorithm": "ES256"}})
    plan = plan_rotation(
        spec,
        (),
        NOW,
        manual_request=None,
        last_manual=None,
        generate=lambda alg, size: keys.KeyMaterial("kid1", alg, keys.use_of(alg), "PEM"),
    )
    assert plan.status()["active"]["use"] == "sig"


def test_the_token_server_builds_an_encryption_ring_for_a_key_without_use() -> None:
    enc = StoredKey(keys.generate("RSA-OAEP-256"), "active", NOW, activated_at=NOW)
    sig = StoredKey(keys.generate("ES256"), "active", NOW, activated_at=NOW)
    snapshot = build(
        server_namespace="kubemint-system",
        clients=[],
        accounts=[],
        rules=[],
        signing_keys=[
            {
                "metadata": {"namespace": "kubemint-system", "name": "enc"},
                "spec": {"algorithm": "RSA-OAEP-256"},
            },
            {"metadata": {"namespace": "kubemint-system", "name": "default"}, "spec": {}},
        ],
        secrets=[keys_secret("enc", [enc]), keys_secret("default", [sig])],
    )
    ring = snapshot.keys["enc"]
    assert ring.use == "enc"
    assert ring.signer is None
    assert ring.encrypter is not None
    assert enc.material.kid in ring.decrypters
    assert snapshot.keys["default"].use == "sig"
    assert snapshot.keys["default"].signer is not None
    assert {k["use"] for k in snapshot.jwks()["keys"]} == {"enc", "sig"}
