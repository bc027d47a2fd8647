"""kubemint.api.identity: client ids stay in their namespace, subjects never collide, and
account claims never carry authority; the CRDs' admission rules say the same."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemint.api.identity import (
    CLAIM_NAME,
    FORBIDDEN_CLAIMS,
    account_claims,
    account_subject,
    claims_problem,
    client_id_in_namespace,
    derived_client_id,
    explicit_client_id_problem,
    forbidden_claims,
)

CRD_DIR = Path(__file__).resolve().parents[3] / "crds"
# Namespace and object names chosen the way an attacker would: prefixes of each other, and
# names that look like the separators of the other kind of subject.
NAMESPACES = ["team", "team-a", "a", "kubemint", "serviceaccount", "x1"]
NAMES = ["a", "a.x", "x", "runner", "team-a.x", "kubemint", "serviceaccount.team-a.runner"]


def _schema(kind: str) -> dict[str, Any]:
    for path in CRD_DIR.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            return schema
    raise LookupError(kind)


def test_a_derived_client_id_is_in_its_namespace() -> None:
    for namespace, name in itertools.product(NAMESPACES, NAMES):
        assert client_id_in_namespace(namespace, derived_client_id(namespace, name))


def test_client_ids_of_different_namespaces_never_collide() -> None:
    """Any id one namespace may use (derived or explicit) is no other namespace's."""
    ids = {
        derived_client_id(namespace, name)
        for namespace, name in itertools.product(NAMESPACES, [*NAMES, "kubemint:x"])
    }
    for client_id in ids:
        owners = [n for n in NAMESPACES if client_id_in_namespace(n, client_id)]
        assert len(owners) == 1, (client_id, owners)


def test_no_client_id_is_a_service_account_subject() -> None:
    subjects = {account_subject(n, m) for n, m in itertools.product(NAMESPACES, NAMES)}
    for namespace in NAMESPACES:
        for subject in subjects:
            assert not client_id_in_namespace(namespace, subject)
            assert explicit_client_id_problem(namespace, subject) is not None
        for name in NAMES:
            assert derived_client_id(namespace, name) not in subjects


@pytest.mark.parametrize(
    ("namespace", "client_id", "refused"),
    [
        ("team-a", "team-a.newsvc", False),
        ("team-a", "team-a.legacy:id", False),
        ("team", "team-a.newsvc", True),
        ("team-a", "team.a-newsvc", True),
        ("team", "kubemint:serviceaccount:team-a:runner", True),
        ("team", "team", True),
        ("team", "team.", True),
        ("team", "legacy-id", True),
    ],
    ids=[
        "an id in the client's own namespace",
        "the rest may hold any allowed character",
        "another namespace's derived id, from a namespace that is its prefix",
        "an id of a namespace that this one extends",
        "a ServiceAccount subject",
        "the namespace name alone",
        "the namespace and a dot alone",
        "an id in no namespace",
    ],
)
def test_explicit_client_ids(namespace: str, client_id: str, refused: bool) -> None:
    problem = explicit_client_id_problem(namespace, client_id)
    assert (problem is not None) is refused
    if problem:
        assert problem.startswith(f"spec.clientId: {client_id!r} is outside")
        assert f"must start with '{namespace}.'" in problem
        assert ("kubemint: prefix is reserved" in problem) is client_id.startswith("kubemint:")


def test_the_admission_rule_refuses_every_id_that_is_in_no_namespace() -> None:
    """The CRD cannot see the namespace, so it checks the shape `<dns label>.<rest>`: every id
    the operator accepts passes it, and a ServiceAccount subject never does."""
    field = _schema("OAuth2Client")["properties"]["spec"]["properties"]["clientId"]
    rule = next(r["rule"] for r in field["x-kubernetes-validations"] if "matches" in r["rule"])
    shape = re.compile(re.search(r"matches\('(.+)'\)", rule)[1])  # type: ignore[index]
    for namespace, name in itertools.product(NAMESPACES, NAMES):
        assert shape.search(derived_client_id(namespace, name))
        assert not shape.search(account_subject(namespace, name))
    assert not shape.search("legacy-id")
    assert not shape.search("Team.x")  # namespaces are lower case


@pytest.mark.parametrize(
    "name",
    [
        "scp",
        "scope",
        "roles",
        "groups",
        "entitlements",
        "permissions",
        "authorities",
        "acr",
        "amr",
        "auth_time",
        "token_use",
        "sub",
        "client_id",
        "email",
        "preferred_username",
        "realm_access",
        "Roles",
        "SCP",
        "https://calendar.example.com/roles",
        "cognito:groups",
        "kubernetes.io",
        "",
        "x" * 65,
    ],
)
def test_forbidden_claim_names(name: str) -> None:
    assert forbidden_claims([name, "team"]) == [name]


@pytest.mark.parametrize("name", ["team", "cost_center", "tier", "build-id", "x" * 64, "Team"])
def test_plain_custom_claims_are_allowed(name: str) -> None:
    assert forbidden_claims([name]) == []


def test_claims_problem_names_the_field_and_every_refused_claim() -> None:
    assert claims_problem({"team": "t"}) is None
    problem = claims_problem({"team": "t", "scp": "admin", "roles": ["admin"]})
    assert problem is not None
    assert problem.startswith("spec.claims: ")
    assert problem.endswith(": roles, scp")


def test_a_token_carries_only_allowed_account_claims() -> None:
    claims = {"team": "t", "tier": "batch", "scp": "admin", "Groups": ["x"]}
    assert account_claims(claims, None) == {"team": "t", "tier": "batch"}
    assert account_claims(claims, frozenset({"team", "scp"})) == {"team": "t"}
    assert account_claims(claims, frozenset()) == {}


def test_admission_refuses_every_forbidden_name_as_listed() -> None:
    """The CRD declares each name (CEL cannot see undeclared keys of a free-form map) and its
    rule refuses each; the operator and token server add other cases and non-plain names."""
    claims = _schema("ServiceAccount")["properties"]["spec"]["properties"]["claims"]
    assert set(claims["properties"]) == FORBIDDEN_CLAIMS
    (rule,) = claims["x-kubernetes-validations"]
    for name in FORBIDDEN_CLAIMS:
        assert f"!has(self.{name})" in rule["rule"]
        assert f"(has(self.{name}) ? ' {name}' : '')" in rule["messageExpression"]
        assert name in rule["message"]


def test_access_rule_claim_names_follow_the_same_rule() -> None:
    field = _schema("AccessRule")["properties"]["spec"]["properties"]["accountClaims"]
    assert field["items"]["pattern"] == f"^{CLAIM_NAME.pattern.split('{')[0]}+$"
    assert field["items"]["maxLength"] == 64
