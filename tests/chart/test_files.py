"""The chart's CRDs (files/crds/, rendered by templates/crds.yaml) are the repository's
`crds/`, and its README documents every value."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from kubemint.devcluster import layout
from tests.chart.conftest import CHART


def test_chart_crds_are_byte_identical_to_the_repository_crds() -> None:
    source = {p.name: p.read_bytes() for p in layout.crds_dir().glob("*.yaml")}
    copied = {p.name: p.read_bytes() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert source, "no CRDs in crds/"
    assert sorted(copied) == sorted(source), "charts/kubemint/files/crds/ is not crds/"
    stale = [name for name in source if copied[name] != source[name]]
    assert not stale, f"copy crds/ to charts/kubemint/files/crds/ again: {stale} differ"


def documented_keys(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of every values key the schema describes (free-form maps end the walk)."""
    keys = set()
    for key, value in values.items():
        path = prefix + key
        keys.add(path)
        child = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and "properties" in child:
            keys |= documented_keys(value, child, path + ".")
    return keys


def load() -> tuple[dict[str, Any], dict[str, Any]]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    return values, schema


def test_schema_describes_every_value_with_a_description() -> None:
    values, schema = load()
    for path in documented_keys(values, schema):
        node = _node(schema, path)
        assert "properties" in node or node.get("description"), path


def leaf_keys(values: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """Dotted paths of the values that are not sections of further described values."""
    keys = documented_keys(values, schema)
    return {key for key in keys if "properties" not in _node(schema, key)}


def test_readme_documents_every_value() -> None:
    values, schema = load()
    readme = (CHART / "README.md").read_text()
    missing = sorted(k for k in leaf_keys(values, schema) if f"| `{k}` |" not in readme)
    assert not missing, f"charts/kubemint/README.md does not document {missing}"


def test_values_yaml_comments_every_leaf_value() -> None:
    values, schema = load()
    leaves = leaf_keys(values, schema)
    stack: list[tuple[int, str]] = []
    previous = ""
    uncommented = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        match = re.match(r"^( *)([A-Za-z][\w]*):", line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            path = ".".join([p for _, p in stack] + [match.group(2)])
            stack.append((indent, match.group(2)))
            if path in leaves and not previous.lstrip().startswith("#"):
                uncommented.append(path)
        if line.strip():
            previous = line
    assert not uncommented, f"values.yaml keys without a comment: {uncommented}"


def _node(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in path.split("."):
        node = node["properties"][part]
    return node
