"""Python reads every kind with the defaults the CRD schema gives: parsing a minimal object
equals parsing that object after the API server's structural defaulting from crds/."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemint.api.accessrule import RuleSpec
from kubemint.api.oauth2client import ClientSpec
from kubemint.api.serviceaccount import AccountSpec
from kubemint.api.signingkey import SigningKeySpec
from kubemint.api.trustedissuer import TrustedIssuerSpec

CRDS = Path(__file__).resolve().parents[3] / "crds"
META = {"namespace": "tasks", "name": "svc", "uid": "u-1"}


def _schema(plural: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / f"kubemint.io_{plural}.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def defaulted(schema: dict[str, Any], value: Any) -> Any:
    """What the API server stores: defaults filled in wherever the parent object exists."""
    if isinstance(value, dict) and "properties" in schema:
        for name, child in schema["properties"].items():
            if name in value:
                value[name] = defaulted(child, value[name])
            elif "default" in child:
                value[name] = defaulted(child, copy.deepcopy(child["default"]))
    elif isinstance(value, list) and "items" in schema:
        value = [defaulted(schema["items"], item) for item in value]
    return value


CASES: list[tuple[str, Callable[[dict[str, Any]], Any], dict[str, Any]]] = [
    ("oauth2clients", ClientSpec.from_body, {"audiences": ["https://a.test"]}),
    (
        "oauth2clients",
        ClientSpec.from_body,
        {"audiences": ["https://a.test"], "jwksSecretRef": {"name": "k"}, "secret": {}},
    ),
    (
        "serviceaccounts",
        AccountSpec.from_body,
        {
            "clients": ["gw"],
            "appPasswords": {"secretName": "pw"},
            "federation": {
                "issuers": [{"issuer": "https://ci.test", "jwksSecretRef": {"name": "k"}}]
            },
        },
    ),
    ("signingkeys", SigningKeySpec.from_body, {}),
    ("signingkeys", SigningKeySpec.from_body, {"rotation": {}}),
    (
        "accessrules",
        RuleSpec.from_body,
        {
            "audience": "https://a.test",
            "subjects": [{"kind": "OAuth2Client", "name": "gw"}],
            "http": [{"paths": ["/api"]}],
        },
    ),
    (
        "serviceaccounts",
        AccountSpec.from_body,
        {
            "clients": ["gw"],
            "appPasswords": {"secretName": "pw"},
            "federation": {"trustedIssuers": [{"name": "github"}]},
        },
    ),
    (
        "trustedissuers",
        TrustedIssuerSpec.from_body,
        {"issuer": "https://ci.test", "jwks": {"keys": [{"kty": "EC"}]}},
    ),
]


@pytest.mark.parametrize(("plural", "parse", "spec"), CASES)
def test_python_defaults_equal_the_crd_schemas(
    plural: str, parse: Callable[[dict[str, Any]], Any], spec: dict[str, Any]
) -> None:
    body = {"metadata": dict(META), "spec": spec}
    stored = defaulted(_schema(plural), copy.deepcopy(body))
    # the schema did default something (AccessRules and TrustedIssuers have no defaults)
    assert stored != body or plural in ("accessrules", "trustedissuers")
    assert parse(body) == parse(stored)


def test_every_defaulted_field_is_read() -> None:
    """A default the CRD sets but Python ignores would be the same bug in disguise: each
    defaulted spec field of OAuth2Client is a field of ClientSpec."""
    stored = defaulted(_schema("oauth2clients"), {"spec": {}})["spec"]
    parsed = ClientSpec.from_body({"metadata": META, "spec": stored})
    assert parsed.grant_types == tuple(stored["grantTypes"])
    assert parsed.auth_method == stored["authMethod"]
    assert parsed.token_format == stored["tokenFormat"]
    assert parsed.signing_key == stored["signingKey"]
    assert parsed.disabled is stored["disabled"]
