"""What the CRD descriptions promise is what the code does.

- Every condition reason a description names (the `status.conditions` texts, and "reason X"
  anywhere) is a reason the operator actually sets (`Outcome(ready, reason, message)`).
- AccessRule `spec.subjects` says which tokens a subject entry covers the way
  `kubemint.oauth.policy.decide` matches them.
- A SigningKey's `use` has no schema default (it is inferred from the algorithm).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemint.oauth.client_auth import Caller
from kubemint.oauth.errors import AccessDenied
from kubemint.oauth.policy import decide
from kubemint.store.snapshot import Snapshot
from tests.unit.records import account_record, build

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"
SOURCE_DIR = REPO_ROOT / "operator" / "kubemint"

NAMES = r"[A-Z][A-Za-z0-9]*(?:(?:,\s*|\s+or\s+|\s+and\s+)[A-Z][A-Za-z0-9]*)*"
EXAMPLES = re.compile(rf"e\.g\.\s+({NAMES})")  # "(e.g. AudienceConflict, InvalidExpression)"
REASON = re.compile(rf"\breasons?\s+\(?(?:e\.g\.\s+)?({NAMES})")  # "(reason AudienceConflict)"
SEPARATOR = re.compile(r",\s*|\s+or\s+|\s+and\s+")


def _crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted(CRD_DIR.glob("*.yaml"))]


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _descriptions(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, description) of every node under `node` that has a description."""
    if isinstance(node, dict):
        if isinstance(node.get("description"), str):
            yield path, node["description"]
        for key, child in node.items():
            yield from _descriptions(child, f"{path}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _descriptions(child, f"{path}[{index}]")


def _names(match: str) -> list[str]:
    return [name for name in SEPARATOR.split(match) if name]


def named_reasons() -> dict[str, set[str]]:
    """reason → where a CRD description names it."""
    found: dict[str, set[str]] = {}
    for crd in _crds():
        kind = crd["spec"]["names"]["kind"]
        conditions = _schema(crd)["properties"]["status"]["properties"]["conditions"]
        texts = [
            (".status.conditions", conditions["description"]),
            (
                ".status.conditions[].reason",
                conditions["items"]["properties"]["reason"]["description"],
            ),
        ]
        for where, text in texts:
            for match in EXAMPLES.findall(" ".join(text.split())):
                for name in _names(match):
                    found.setdefault(name, set()).add(f"{kind}{where}")
        version = crd["spec"]["versions"][0]
        described = [
            *_descriptions(_schema(crd)),
            *_descriptions(version.get("additionalPrinterColumns"), " column"),
        ]
        for where, text in described:
            for match in REASON.findall(" ".join(text.split())):
                for name in _names(match):
                    found.setdefault(name, set()).add(f"{kind}{where}")
    return found


@cache
def operator_reasons() -> frozenset[str]:
    """Every reason the operator code puts in a condition: the second argument (or `reason=`)
    of `Outcome(...)`, and of `cls(...)` inside Outcome's own constructors."""
    reasons: set[str] = set()
    for path in SOURCE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name not in ("Outcome", "cls"):
                continue
            arguments = [*node.args[1:2], *(k.value for k in node.keywords if k.arg == "reason")]
            for argument in arguments:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    reasons.add(argument.value)
    return frozenset(reasons)


def test_the_operator_reasons_are_found() -> None:
    assert {"Reconciled", "AudienceConflict", "RetainAfterTooShort", "WrongNamespace"} <= (
        operator_reasons()
    )


def test_the_descriptions_name_reasons() -> None:
    named = named_reasons()
    assert {"AudienceConflict", "RetainAfterTooShort", "SigningKeyNotFound"} <= set(named)


@pytest.mark.parametrize("reason", sorted(named_reasons()))
def test_every_reason_a_description_names_is_set_by_the_operator(reason: str) -> None:
    where = ", ".join(sorted(named_reasons()[reason]))
    assert reason in operator_reasons(), f"{where} names reason {reason}, which is never set"


# --- AccessRule spec.subjects -----------------------------------------------------------------


def _crd(kind: str) -> dict[str, Any]:
    return next(crd for crd in _crds() if crd["spec"]["names"]["kind"] == kind)


def _field(kind: str, *path: str) -> dict[str, Any]:
    node = _schema(_crd(kind))
    for name in path:
        node = node["properties"][name]
    return node


AUDIENCE = "https://api.test"


def _snapshot(subject: dict[str, str]) -> Snapshot:
    client = {
        "metadata": {
            "namespace": "tasks",
            "name": "gw",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"audiences": [AUDIENCE], "scopes": ["read"], "grantTypes": ["password"]},
    }
    account = {"metadata": {"namespace": "tasks", "name": "bot"}, "spec": {"clients": ["gw"]}}
    rule = {
        "metadata": {"namespace": "api", "name": "r", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"audience": AUDIENCE, "scopes": ["read"], "subjects": [subject]},
    }
    record = account_record("tasks", "bot")
    return build(
        server_namespace="kubemint-system",
        clients=[client],
        accounts=[account],
        rules=[rule],
        signing_keys=[],
        secrets=[record],
    )


def _granted(snapshot: Snapshot, as_account: bool) -> bool:
    client = snapshot.clients["tasks.gw"]
    account = snapshot.accounts[("tasks", "bot")] if as_account else None
    caller = Caller(client, "app_password" if as_account else "client_secret_basic", account)
    try:
        decide(caller, snapshot, AUDIENCE, None, dict)
    except AccessDenied:
        return False
    return True


def test_a_rule_naming_a_client_covers_only_the_tokens_the_client_gets_for_itself() -> None:
    names_client = _snapshot({"kind": "OAuth2Client", "namespace": "tasks", "name": "gw"})
    assert _granted(names_client, as_account=False)
    assert not _granted(names_client, as_account=True)  # a ServiceAccount's token via gw
    names_account = _snapshot({"kind": "ServiceAccount", "namespace": "tasks", "name": "bot"})
    assert _granted(names_account, as_account=True)
    assert not _granted(names_account, as_account=False)


def test_the_subjects_description_says_what_a_client_entry_covers() -> None:
    text = " ".join(_field("AccessRule", "spec", "subjects")["description"].split())
    assert "any token the client obtains" not in text
    assert "tokens that client obtains for itself" in text
    assert "match only rules naming the ServiceAccount" in text
    assert "a rule naming the OAuth2Client they came through does not cover them" in text


# --- SigningKey spec.use ----------------------------------------------------------------------


def test_a_signing_key_use_has_no_default_so_it_can_be_inferred() -> None:
    use = _field("SigningKey", "spec", "use")
    assert "default" not in use
    assert "inferred from spec.algorithm" in " ".join(use["description"].split())


def test_the_use_column_shows_what_the_operator_generated() -> None:
    columns = _crd("SigningKey")["spec"]["versions"][0]["additionalPrinterColumns"]
    use = next(c for c in columns if c["name"] == "Use")
    assert use["jsonPath"] == ".status.active.use"
    assert "use" in _field("SigningKey", "status", "active")["properties"]
