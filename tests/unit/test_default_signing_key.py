"""KUBEMINT_DEFAULT_SIGNING_KEY (the chart's signingKey.* values) as the operator reads it, and
the apply configuration it makes of it: only the fields the chart decides."""

from __future__ import annotations

import json

import pytest

from kubemint.config import DEFAULT_SIGNING_KEY_ENV, DefaultSigningKey
from kubemint.controller.default_key import desired

SPEC = {"algorithm": "ES256", "use": "sig", "rotation": {"every": "720h"}}


def _env(value: object) -> dict[str, str]:
    return {DEFAULT_SIGNING_KEY_ENV: json.dumps(value)}


def test_absent_or_empty_means_no_key() -> None:
    assert DefaultSigningKey.from_env({}) is None
    assert DefaultSigningKey.from_env({DEFAULT_SIGNING_KEY_ENV: " "}) is None


def test_the_chart_s_json_is_read() -> None:
    key = DefaultSigningKey.from_env(_env({"name": "default", "spec": SPEC, "owner": "op"}))
    assert key == DefaultSigningKey(name="default", spec=SPEC, owner="op")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("{not json", "is not JSON"),
        (["default"], "must be an object of name, spec, owner"),
        ({"name": "default", "spec": SPEC, "extra": 1}, "must be an object of name, spec, owner"),
        ({"name": "", "spec": SPEC}, ".name must be a non-empty string"),
        ({"name": "default", "spec": "ES256"}, ".spec must be an object"),
        ({"name": "default", "spec": SPEC, "owner": 3}, ".owner must be a string"),
    ],
)
def test_a_malformed_value_names_what_is_wrong(value: object, says: str) -> None:
    env = {DEFAULT_SIGNING_KEY_ENV: value} if isinstance(value, str) else _env(value)
    with pytest.raises(ValueError, match=DEFAULT_SIGNING_KEY_ENV) as raised:
        DefaultSigningKey.from_env(env)
    assert says in str(raised.value)


def test_kept_keys_have_no_owner_and_owned_ones_name_the_deployment() -> None:
    kept = desired(DefaultSigningKey("default", SPEC), "kubemint-system", None)
    assert kept == {
        "apiVersion": "kubemint.io/v1alpha1",
        "kind": "SigningKey",
        "metadata": {
            "name": "default",
            "namespace": "kubemint-system",
            "labels": {"app.kubernetes.io/part-of": "kubemint"},
        },
        "spec": SPEC,
    }
    owned = desired(DefaultSigningKey("default", SPEC, owner="op"), "kubemint-system", "u-1")
    assert owned["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "op", "uid": "u-1"}
    ]
