"""Static checks of the CustomResourceDefinitions in crds/ (no cluster needed).

The CRDs are hand-written and are the API contract users read with `kubectl explain`, so these
tests hold them to the house rules: every field documented, every string and list bounded (which
also keeps CEL cost estimates within budget), every CEL rule with a message that names the field.
Each failing assertion reports the JSON path of the offending schema node.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"
GROUP = "kubemint.io"
VERSION = "v1alpha1"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
READY_JSONPATH = '.status.conditions[?(@.type=="Ready")].status'
REASON_JSONPATH = '.status.conditions[?(@.type=="Ready")].reason'

Schema = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    """What the spec says about one kind's names and printer columns."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    columns: tuple[str, ...]
    wide_only_columns: tuple[str, ...]


KINDS: tuple[Kind, ...] = (
    Kind(
        kind="SigningKey",
        plural="signingkeys",
        short_names=("skey", "sigkey"),
        columns=("Algorithm", "Active-Kid", "Next-Rotation", "Ready", "Age"),
        wide_only_columns=("Use", "Next-Kid", "Reason"),
    ),
    Kind(
        kind="OAuth2Client",
        plural="oauth2clients",
        short_names=("oac", "o2c"),
        columns=("Client-ID", "Ready", "Age"),
        wide_only_columns=("Auth", "Secret", "Reason"),
    ),
    Kind(
        kind="ServiceAccount",
        plural="serviceaccounts",
        short_names=("kmsa",),
        columns=("Subject", "Ready", "Age"),
        wide_only_columns=("Clients", "Reason"),
    ),
    Kind(
        kind="AccessRule",
        plural="accessrules",
        short_names=("arule", "kmar"),
        columns=("Audience", "Ready", "Age"),
        wide_only_columns=("Reason",),
    ),
    Kind(
        kind="TrustedIssuer",
        plural="trustedissuers",
        short_names=("tiss",),
        columns=("Issuer", "Ready", "Age"),
        wide_only_columns=("Reason",),
    ),
)


def crd_path(kind: Kind) -> Path:
    return CRD_DIR / f"{GROUP}_{kind.plural}.yaml"


def load_crd(kind: Kind) -> dict[str, Any]:
    documents = [doc for doc in yaml.safe_load_all(crd_path(kind).read_text()) if doc]
    assert len(documents) == 1, f"{crd_path(kind).name}: expected one document"
    crd = documents[0]
    assert isinstance(crd, dict)
    return crd


def only_version(crd: dict[str, Any]) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    assert isinstance(versions, list)
    assert len(versions) == 1
    version = versions[0]
    assert isinstance(version, dict)
    return version


def root_schema(kind: Kind) -> Schema:
    schema = only_version(load_crd(kind))["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


def walk(schema: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    """Yield (JSON path, node) for `schema` and every schema nested in it.

    List items are written `[*]` and map values `{*}`, so `.spec.grantTypes[*]` is an item of
    spec.grantTypes and `.spec.secret.template.labels{*}` a label value.
    """
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[*]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{*}}")


def spec_and_status_nodes() -> list[tuple[str, Schema]]:
    """Every schema node at every depth below .spec and .status of every kind."""
    nodes: list[tuple[str, Schema]] = []
    for kind in KINDS:
        root = root_schema(kind)
        for top in ("spec", "status"):
            nodes.extend(
                (f"{kind.kind}{path}", node)
                for path, node in walk(root["properties"][top], f".{top}")
            )
    return nodes


def all_nodes() -> list[tuple[str, Schema]]:
    return [
        (f"{kind.kind}{path}", node) for kind in KINDS for path, node in walk(root_schema(kind), "")
    ]


def kind_param(kind: Kind) -> Any:
    return pytest.param(kind, id=kind.kind)


KIND_PARAMS = [kind_param(kind) for kind in KINDS]


def test_the_crds_directory_holds_exactly_the_kubemint_kinds() -> None:
    expected = sorted(crd_path(kind).name for kind in KINDS)
    assert sorted(path.name for path in CRD_DIR.glob("*.yaml")) == expected


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_every_crd_file_loads_as_one_custom_resource_definition(kind: Kind) -> None:
    crd = load_crd(kind)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{kind.plural}.{GROUP}"
    assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubemint"


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_the_group_is_kubemint_io_and_the_kind_is_namespaced(kind: Kind) -> None:
    spec = load_crd(kind)["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_names_short_names_and_the_kubemint_category_match_the_spec(kind: Kind) -> None:
    names = load_crd(kind)["spec"]["names"]
    assert names["kind"] == kind.kind
    assert names["plural"] == kind.plural
    assert names["singular"] == kind.kind.lower()
    assert names["listKind"] == f"{kind.kind}List"
    assert tuple(names["shortNames"]) == kind.short_names
    assert "kubemint" in names["categories"]


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_v1alpha1_is_the_only_version_and_is_served_and_stored(kind: Kind) -> None:
    version = only_version(load_crd(kind))
    assert version["name"] == VERSION
    assert version["served"] is True
    assert version["storage"] is True


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_the_status_subresource_is_enabled(kind: Kind) -> None:
    assert only_version(load_crd(kind))["subresources"]["status"] == {}


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_printer_columns_are_the_kind_specific_ones_plus_ready_reason_and_age(
    kind: Kind,
) -> None:
    columns = only_version(load_crd(kind))["additionalPrinterColumns"]
    by_name = {column["name"]: column for column in columns}
    assert set(by_name) == set(kind.columns) | set(kind.wide_only_columns)
    for name in kind.columns:
        assert by_name[name].get("priority", 0) == 0, f"column {name} should be in the default view"
    for name in kind.wide_only_columns:
        assert by_name[name].get("priority") == 1, f"column {name} should only show with -o wide"
    assert by_name["Ready"]["jsonPath"] == READY_JSONPATH
    assert by_name["Reason"]["jsonPath"] == REASON_JSONPATH
    assert by_name["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }
    assert [column["name"] for column in columns][-1] == "Age", "Age should be the last column"


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_the_kind_has_a_top_level_description(kind: Kind) -> None:
    description = root_schema(kind).get("description", "")
    assert len(description.split()) >= 20, f"{kind.kind}: the kind description is too thin"


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_status_reports_observed_generation_and_conditions_keyed_by_type(kind: Kind) -> None:
    status = root_schema(kind)["properties"]["status"]["properties"]
    assert status["observedGeneration"]["type"] == "integer"
    assert status["observedGeneration"]["format"] == "int64"
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    condition = conditions["items"]
    assert set(condition["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert condition["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert condition["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert {"type", "status"} <= set(condition["required"])


def test_every_property_in_spec_and_status_has_a_description() -> None:
    missing = [
        path
        for path, node in spec_and_status_nodes()
        if not str(node.get("description", "")).strip()
    ]
    assert not missing, f"schema nodes without a description: {missing}"


def test_every_string_has_a_max_length_an_enum_or_the_date_time_format() -> None:
    unbounded = [
        path
        for path, node in all_nodes()
        if node.get("type") == "string"
        and path
        not in {f"{kind.kind}{field}" for kind in KINDS for field in (".apiVersion", ".kind")}
        and "maxLength" not in node
        and "enum" not in node
        and node.get("format") != "date-time"
    ]
    assert not unbounded, f"strings without maxLength: {unbounded}"


def test_every_array_has_max_items() -> None:
    unbounded = [
        path for path, node in all_nodes() if node.get("type") == "array" and "maxItems" not in node
    ]
    assert not unbounded, f"arrays without maxItems: {unbounded}"


def test_every_map_has_max_properties() -> None:
    unbounded = [
        path
        for path, node in all_nodes()
        if isinstance(node.get("additionalProperties"), dict) and "maxProperties" not in node
    ]
    assert not unbounded, f"maps without maxProperties: {unbounded}"


def test_every_validation_rule_has_a_message_that_names_a_spec_field() -> None:
    offenders: list[str] = []
    for path, node in all_nodes():
        for index, rule in enumerate(node.get("x-kubernetes-validations", [])):
            where = f"{path}.x-kubernetes-validations[{index}] ({rule.get('rule')!r})"
            message = str(rule.get("message", "")).strip()
            message_expression = str(rule.get("messageExpression", "")).strip()
            if not message and not message_expression:
                offenders.append(f"{where}: no message or messageExpression")
            if message and "spec." not in message:
                offenders.append(f"{where}: message does not name a spec field")
            if message_expression and "spec." not in message_expression:
                offenders.append(f"{where}: messageExpression does not name a spec field")
    assert not offenders, "\n".join(offenders)


def test_every_duration_uses_the_go_duration_pattern_and_max_length_32() -> None:
    duration_names = {
        "every",
        "prePublish",
        "retainAfter",
        "tokenLifetime",
        "rotateEvery",
        "overlap",
    }
    offenders = [
        path
        for path, node in spec_and_status_nodes()
        if path.rsplit(".", 1)[-1] in duration_names
        and (node.get("pattern") != DURATION_PATTERN or node.get("maxLength") != 32)
    ]
    assert not offenders, f"durations without the Go duration pattern: {offenders}"


DURATION_NAMES = {"every", "prePublish", "retainAfter", "tokenLifetime", "rotateEvery", "overlap"}
# An upper bound on the field itself, as a rule with no `||` or `?` that could skip it: a rule
# on the parent guarded by `!has(...)` never runs when a sibling is unset, and a duration that
# matches the pattern can still overflow (99999999999999999999999999999h).
UPPER_BOUND = re.compile(
    r"^duration\(self\) (>= duration\('[0-9a-z]+'\) && duration\(self\) )?"
    r"<= duration\('([0-9]+)h'\)$"
)


def test_every_duration_has_an_upper_bound_that_nothing_short_circuits() -> None:
    offenders = []
    for path, node in spec_and_status_nodes():
        name = path.rsplit(".", 1)[-1]
        if name not in DURATION_NAMES or ".spec." not in path:
            continue
        field = "spec." + path.split(".spec.", 1)[1]
        bounds = [
            rule
            for rule in node.get("x-kubernetes-validations", [])
            if (match := UPPER_BOUND.match(rule["rule"])) and int(match.group(2)) <= 87600
        ]
        if not bounds or not all(field in rule["message"] for rule in bounds):
            offenders.append(path)
    assert not offenders, f"durations without an upper bound naming the field: {offenders}"


def test_sets_hold_scalars_and_map_lists_are_keyed_by_required_fields() -> None:
    offenders: list[str] = []
    for path, node in all_nodes():
        list_type = node.get("x-kubernetes-list-type")
        items = node.get("items", {})
        if list_type == "set" and items.get("type") not in {"string", "integer"}:
            offenders.append(f"{path}: a set of non-scalars")
        if list_type == "map":
            keys = node.get("x-kubernetes-list-map-keys", [])
            if not keys:
                offenders.append(f"{path}: a map list without x-kubernetes-list-map-keys")
            for key in keys:
                if key not in items.get("required", []):
                    offenders.append(f"{path}: map key {key} is not required")
    assert not offenders, "\n".join(offenders)


def test_every_object_below_the_root_declares_its_fields_or_preserves_unknown_ones() -> None:
    offenders = [
        path
        for path, node in all_nodes()
        if node.get("type") == "object"
        and path not in {f"{kind.kind}" for kind in KINDS}
        and not path.endswith(".metadata")
        and "properties" not in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert not offenders, f"objects with no declared fields: {offenders}"


@dataclass(frozen=True)
class Default:
    """A default value the spec mandates at a schema path."""

    kind: str
    path: str
    value: Any


DEFAULTS: tuple[Default, ...] = (
    Default("SigningKey", ".spec", {}),
    Default("SigningKey", ".spec.algorithm", "ES256"),
    Default("SigningKey", ".spec.rotation", {}),
    Default("SigningKey", ".spec.rotation.every", "720h"),
    Default("SigningKey", ".spec.rotation.prePublish", "24h"),
    Default("SigningKey", ".spec.rotation.retainAfter", "24h"),
    Default("OAuth2Client", ".spec.disabled", False),
    Default("OAuth2Client", ".spec.grantTypes", ["client_credentials"]),
    Default("OAuth2Client", ".spec.authMethod", "client_secret_basic"),
    Default("OAuth2Client", ".spec.tokenLifetime", "15m"),
    Default("OAuth2Client", ".spec.tokenFormat", "jwt"),
    Default("OAuth2Client", ".spec.signingKey", "default"),
    Default("OAuth2Client", ".spec.jwksSecretRef.key", "jwks.json"),
    Default("OAuth2Client", ".spec.secret", {}),
    Default("OAuth2Client", ".spec.secret.overlap", "1h"),
    Default("ServiceAccount", ".spec.disabled", False),
    Default("ServiceAccount", ".spec.appPasswords.overlap", "1h"),
    Default("ServiceAccount", ".spec.federation.issuers[*].jwksSecretRef.key", "jwks.json"),
)


@pytest.mark.parametrize(
    "default", [pytest.param(d, id=f"{d.kind}{d.path} defaults to {d.value!r}") for d in DEFAULTS]
)
def test_the_defaults_are_the_ones_the_spec_names(default: Default) -> None:
    nodes = {
        path: node
        for kind in KINDS
        if kind.kind == default.kind
        for path, node in walk(root_schema(kind), "")
    }
    assert default.path in nodes, f"{default.kind}{default.path} does not exist"
    assert nodes[default.path].get("default") == default.value, f"{default.kind}{default.path}"


@dataclass(frozen=True)
class Required:
    """Fields the spec says a user must set."""

    kind: str
    path: str
    fields: tuple[str, ...]


REQUIRED: tuple[Required, ...] = (
    Required("OAuth2Client", ".spec", ("audiences",)),
    Required("OAuth2Client", ".spec.jwksSecretRef", ("name",)),
    Required("OAuth2Client", ".spec.jwks.keys[*]", ("kty",)),
    Required("ServiceAccount", ".spec", ("clients",)),
    Required("ServiceAccount", ".spec.appPasswords", ("secretName",)),
    Required("ServiceAccount", ".spec.federation.kubernetes[*]", ("serviceAccountName",)),
    Required("ServiceAccount", ".spec.federation.issuers[*]", ("issuer",)),
    Required("AccessRule", ".spec", ("audience", "subjects")),
    Required("AccessRule", ".spec.subjects[*]", ("kind", "name")),
    Required("ServiceAccount", ".spec.federation.trustedIssuers[*]", ("name",)),
    Required("TrustedIssuer", ".spec", ("issuer",)),
    Required("TrustedIssuer", ".spec.jwks.keys[*]", ("kty",)),
)


@pytest.mark.parametrize(
    "required",
    [pytest.param(r, id=f"{r.kind}{r.path} requires {', '.join(r.fields)}") for r in REQUIRED],
)
def test_the_fields_the_spec_requires_are_required(required: Required) -> None:
    nodes = {
        path: node
        for kind in KINDS
        if kind.kind == required.kind
        for path, node in walk(root_schema(kind), "")
    }
    assert set(required.fields) <= set(nodes[required.path].get("required", [])), (
        f"{required.kind}{required.path}"
    )
