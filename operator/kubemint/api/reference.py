"""A Markdown reference of the custom resources, generated from the CRD files in crds/.

`python -m kubemint.api.reference docs/crd-reference.md` (or `make docs`) writes it;
`python -m kubemint.api.reference --check docs/crd-reference.md` exits 1 when the file is stale.

Everything but `load_crds` and `main` is a pure function of the parsed CRDs. The output keeps
the schemas' own order (YAML mappings load in file order), so it is the same on every run.
Per kind: a heading, the kind's description, names, scope, printer columns; then one table per
object level (the top level, spec, every nested object and array item, status) with a row per
field, and the messages of the CEL validation rules that apply at that level.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Schema = Mapping[str, Any]

GENERATED_NOTICE = (
    "<!-- Generated from crds/*.yaml by `python -m kubemint.api.reference "
    "docs/crd-reference.md`; do not edit by hand. Regenerate with `make docs`. -->"
)
TITLE = "# kubemint custom resource reference"
INTRO = (
    "Every field of the kubemint custom resources, generated from the CustomResourceDefinitions "
    "in [`crds/`](../crds/) (run `make docs` after changing them). `kubectl explain "
    "<kind>.spec` shows the same descriptions. Admission checks types, enums, patterns, lengths "
    "and the CEL validation rules listed under each table; their messages are what "
    "`kubectl apply` prints when it rejects an object."
)

# Long patterns that recur across the CRDs, shown by name instead of as a regular expression.
NAMED_PATTERNS: Mapping[str, str] = {
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$": (
        "DNS subdomain name (RFC 1123)"
    ),
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": "DNS label (RFC 1123)",
    r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$": "Go duration (units h, m, s, ms), e.g. `1h30m`",
    r"^[\x21\x23-\x5B\x5D-\x7E]+$": 'scope token (printable ASCII except space, `"` and `\\`)',
    (
        r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
    ): "qualified name (optional DNS-subdomain prefix and `/`)",
}

TOP_LEVELS = ("spec", "status")


@dataclass(frozen=True)
class Field:
    """One row of a level's table."""

    path: str
    type: str
    required: bool
    description: str


@dataclass(frozen=True)
class Rule:
    """One CEL validation rule, attached to the field (or level) it is declared on."""

    path: str
    message: str
    computed: bool
    reason: str


@dataclass(frozen=True)
class Level:
    """An object in the schema whose fields get a table: spec, spec.rotation, spec.http[], ..."""

    path: str
    description: str
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...]


# --- loading -------------------------------------------------------------------------------


def load_crds(directory: Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions in `directory`/*.yaml, ordered by kind."""
    crds: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                crds.append(document)
    return sorted(crds, key=lambda crd: str(crd["spec"]["names"]["kind"]))


# --- Markdown helpers ----------------------------------------------------------------------


def code(text: str) -> str:
    """`text` as a Markdown code span, with a fence longer than any backtick run inside."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


_MARKDOWN_SPECIALS = {"\\": "\\\\", "*": "\\*", "<": "&lt;", ">": "&gt;"}


def prose(text: str) -> str:
    """Schema prose as Markdown: one line, code spans kept, other markup characters escaped."""
    flat = " ".join(text.split())
    parts = flat.split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: escape it as well
        return "".join(_MARKDOWN_SPECIALS.get(c, c) for c in flat).replace("`", "\\`")
    return "`".join(
        part if index % 2 else "".join(_MARKDOWN_SPECIALS.get(c, c) for c in part)
        for index, part in enumerate(parts)
    )


def cell(text: str) -> str:
    """Text for a table cell: pipes escaped (GitHub also unescapes them inside code spans)."""
    return text.replace("|", "\\|")


def scalar(value: Any) -> str:
    """A default or enum value as it would be written in YAML, as a code span."""
    if isinstance(value, str):
        return code(value)
    return code(json.dumps(value, separators=(", ", ": "), ensure_ascii=False))


# --- types ---------------------------------------------------------------------------------


def base_type(node: Schema) -> str:
    """`string`, `integer (int64)`, `[]string`, `map[string]string`, `int-or-string`, ..."""
    if node.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    kind = str(node.get("type", "any"))
    if kind == "array":
        items = node.get("items")
        return "[]" + (base_type(items) if isinstance(items, Mapping) else "any")
    if kind == "object" and isinstance(node.get("additionalProperties"), Mapping):
        return f"map[string]{base_type(node['additionalProperties'])}"
    if "format" in node:
        return f"{kind} ({node['format']})"
    return kind


def _range(low: Any, high: Any, unit: str) -> str | None:
    if low is not None and high is not None:
        return f"{low} to {high} {unit}" if low != high else f"exactly {low} {unit}"
    if high is not None:
        return f"at most {high} {unit}"
    if low is not None:
        return f"at least {low} {unit}"
    return None


def constraints(node: Schema) -> list[str]:
    """The value constraints of a scalar node (or of the node itself for arrays and maps)."""
    found: list[str] = []
    if "enum" in node:
        found.append("one of " + ", ".join(scalar(value) for value in node["enum"]))
    if "pattern" in node:
        pattern = str(node["pattern"])
        found.append(f"pattern: {NAMED_PATTERNS.get(pattern, code(pattern))}")
    length = _range(node.get("minLength"), node.get("maxLength"), "characters")
    if length:
        found.append(length)
    low = node.get("minimum")
    high = node.get("maximum")
    if low is not None or high is not None:
        found.append(
            " and ".join(
                text
                for text in (
                    None if low is None else f"≥ {low}",
                    None if high is None else f"≤ {high}",
                )
                if text
            )
        )
    items = _range(node.get("minItems"), node.get("maxItems"), "items")
    if items:
        found.append(items)
    properties = _range(node.get("minProperties"), node.get("maxProperties"), "entries")
    if properties:
        found.append(properties)
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "set":
        found.append("unique items")
    elif list_type == "map":
        keys = ", ".join(code(str(key)) for key in node.get("x-kubernetes-list-map-keys", []))
        found.append(f"items unique by {keys}")
    if node.get("x-kubernetes-preserve-unknown-fields"):
        found.append("other fields kept as given")
    return found


def type_text(node: Schema) -> str:
    """The Type cell: the type, then constraints, element constraints and the default."""
    lines = [code(base_type(node))]
    lines.extend(constraints(node))
    element = node.get("items") if node.get("type") == "array" else None
    if element is None and node.get("type") == "object":
        element = node.get("additionalProperties")
    if isinstance(element, Mapping) and not has_fields(element):
        element_constraints = constraints(element)
        noun = "each item" if node.get("type") == "array" else "each value"
        if element_constraints:
            lines.append(f"{noun}: " + "; ".join(element_constraints))
    if "default" in node:
        lines.append(f"default: {scalar(node['default'])}")
    return "<br>".join(lines)


def has_fields(node: Schema) -> bool:
    """Whether the node is an object with declared fields (and so gets a table of its own)."""
    return isinstance(node.get("properties"), Mapping) and bool(node["properties"])


# --- levels --------------------------------------------------------------------------------


def _rules_of(node: Schema, path: str) -> list[Rule]:
    rules: list[Rule] = []
    for rule in node.get("x-kubernetes-validations", []):
        message = " ".join(str(rule.get("message", "")).split())
        if not message:
            message = f"failed rule: {' '.join(str(rule.get('rule', '')).split())}"
        field_path = str(rule.get("fieldPath", ""))
        rules.append(
            Rule(
                path=path + field_path if field_path else path,
                message=message,
                computed="messageExpression" in rule,
                reason=str(rule.get("reason", "")),
            )
        )
    return rules


def _field_rules(node: Schema, path: str) -> list[Rule]:
    """Rules on a field and on any scalar elements of it (they have no level of their own)."""
    rules = _rules_of(node, path)
    items = node.get("items")
    if isinstance(items, Mapping) and not has_fields(items):
        rules.extend(_rules_of(items, f"{path}[]"))
    values = node.get("additionalProperties")
    if isinstance(values, Mapping) and not has_fields(values):
        rules.extend(_rules_of(values, f"{path}.*"))
    return rules


def levels(node: Schema, path: str, description: str | None = None) -> Iterator[Level]:
    """Yield `node` (an object with fields) and every object level nested in it, depth first."""
    properties: Mapping[str, Schema] = node.get("properties", {})
    required = set(node.get("required", []))
    fields: list[Field] = []
    rules = _rules_of(node, path)
    nested: list[tuple[Schema, str, str | None]] = []
    for name, child in properties.items():
        child_path = f"{path}.{name}" if path else name
        fields.append(
            Field(
                path=child_path,
                type=type_text(child),
                required=name in required,
                description=str(child.get("description", "")),
            )
        )
        if has_fields(child):  # its own rules are listed with its own table
            nested.append((child, child_path, None))
        else:
            rules.extend(_field_rules(child, child_path))
        items = child.get("items")
        if isinstance(items, Mapping) and has_fields(items):
            nested.append((items, f"{child_path}[]", str(items.get("description", ""))))
        values = child.get("additionalProperties")
        if isinstance(values, Mapping) and has_fields(values):
            nested.append((values, f"{child_path}.*", str(values.get("description", ""))))
    yield Level(
        path=path,
        description=str(node.get("description", "")) if description is None else description,
        fields=tuple(fields),
        rules=tuple(rules),
    )
    for child, child_path, child_description in nested:
        yield from levels(child, child_path, child_description)


def kind_levels(schema: Schema) -> list[Level]:
    """The top level of a kind (apiVersion, kind, metadata, spec, status), then spec's levels,
    then status's levels."""
    top = Level(
        path="",
        description="",
        fields=tuple(
            Field(
                path=name,
                type=type_text(child),
                required=name in set(schema.get("required", [])),
                description=str(child.get("description", "")),
            )
            for name, child in schema.get("properties", {}).items()
        ),
        rules=tuple(_rules_of(schema, "")),
    )
    result = [top]
    for name in TOP_LEVELS:
        child = schema.get("properties", {}).get(name)
        if isinstance(child, Mapping) and has_fields(child):
            result.extend(levels(child, name))
    for name, child in schema.get("properties", {}).items():
        if name not in TOP_LEVELS and isinstance(child, Mapping) and has_fields(child):
            result.extend(levels(child, name))
    return result


def field_paths(crd: Mapping[str, Any]) -> list[str]:
    """Every field path the reference documents for a CRD, in document order."""
    return [
        field.path
        for version in crd["spec"]["versions"]
        for level in kind_levels(version["schema"]["openAPIV3Schema"])
        for field in level.fields
    ]


# --- rendering -----------------------------------------------------------------------------


def render_level(level: Level, heading: str) -> list[str]:
    title = code(level.path) if level.path else "Top level"
    lines = [f"{heading} {title}", ""]
    if level.description.strip():
        lines += [prose(level.description), ""]
    lines += ["| Field | Type | Required | Description |", "|---|---|---|---|"]
    for field in level.fields:
        row = (
            code(field.path),
            field.type,
            "yes" if field.required else "",
            prose(field.description),
        )
        lines.append("| " + " | ".join(cell(text) for text in row) + " |")
    lines.append("")
    if level.rules:
        lines += ["Validation rules:", ""]
        for rule in level.rules:
            where = code(rule.path) if rule.path else "the object"
            text = f"- {where}: {prose(rule.message)}"
            details = []
            if rule.reason:
                details.append(code(rule.reason))
            if rule.computed:
                details.append("the API server reports a more specific variant of this message")
            if details:
                text += f" ({'; '.join(details)})"
            lines.append(text)
        lines.append("")
    return lines


def render_columns(columns: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| Column | Type | JSONPath | Shown | Description |",
        "|---|---|---|---|---|",
    ]
    for column in columns:
        row = (
            str(column["name"]),
            code(str(column["type"])),
            code(str(column["jsonPath"])),
            "always" if int(column.get("priority", 0)) == 0 else "with `-o wide`",
            prose(str(column.get("description", ""))),
        )
        lines.append("| " + " | ".join(cell(text) for text in row) + " |")
    return [*lines, ""]


def render_kind(crd: Mapping[str, Any]) -> list[str]:
    spec = crd["spec"]
    names = spec["names"]
    versions = spec["versions"]
    lines: list[str] = []
    for version in versions:
        suffix = f" ({version['name']})" if len(versions) > 1 else ""
        schema = version["schema"]["openAPIV3Schema"]
        lines += [f"## {names['kind']}{suffix}", ""]
        if schema.get("description"):
            lines += [prose(str(schema["description"])), ""]
        short_names = ", ".join(code(str(name)) for name in names.get("shortNames", []))
        categories = ", ".join(code(str(name)) for name in names.get("categories", []))
        lines += [
            f"- API version: {code(spec['group'] + '/' + version['name'])}",
            f"- Scope: {spec['scope']}",
            f"- Plural: {code(str(names['plural']))}, singular: "
            f"{code(str(names.get('singular', str(names['kind']).lower())))}",
            f"- Short names: {short_names or 'none'}",
        ]
        if categories:
            lines.append(f"- Categories: {categories}")
        if "status" in version.get("subresources", {}):
            lines.append("- Subresources: `status`")
        lines.append("")
        columns = version.get("additionalPrinterColumns", [])
        if columns:
            lines += ["### Printer columns", ""]
            lines += render_columns(columns)
        for level in kind_levels(schema):
            lines += render_level(level, "###")
    return lines


def render(crds: Sequence[Mapping[str, Any]]) -> str:
    """The whole reference document for `crds`."""
    lines = [GENERATED_NOTICE, "", TITLE, "", INTRO, ""]
    lines += [
        f"- [{crd['spec']['names']['kind']}](#{str(crd['spec']['names']['kind']).lower()})"
        for crd in crds
    ]
    lines.append("")
    for crd in crds:
        lines += render_kind(crd)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(line.rstrip() for line in lines) + "\n"


def stale_report(current: str | None, expected: str, out: str) -> str | None:
    """None when `current` is `expected`, otherwise what to tell the user (with a diff)."""
    if current == expected:
        return None
    if current is None:
        return f"{out} does not exist; run `make docs` to generate it\n"
    diff = list(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            fromfile=f"{out} (committed)",
            tofile=f"{out} (generated from crds/)",
        )
    )
    shown = diff[:200]
    more = f"... {len(diff) - len(shown)} more diff lines\n" if len(diff) > len(shown) else ""
    return f"{out} is stale; run `make docs` to regenerate it\n" + "".join(shown) + more


# --- command line --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubemint.api.reference",
        description="Write (or with --check, verify) the Markdown CRD reference.",
    )
    parser.add_argument("out", metavar="OUT", type=Path, help="e.g. docs/crd-reference.md")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 with a diff when OUT is not up to date"
    )
    parser.add_argument(
        "--crds", type=Path, default=Path("crds"), help="directory of CRD YAML files (crds)"
    )
    args = parser.parse_args(argv)
    crds = load_crds(args.crds)
    if not crds:
        print(f"no CustomResourceDefinitions found in {args.crds}", file=sys.stderr)
        return 2
    text = render(crds)
    out: Path = args.out
    if args.check:
        current = out.read_text(encoding="utf-8") if out.is_file() else None
        report = stale_report(current, text, str(out))
        if report is not None:
            sys.stderr.write(report)
            return 1
        print(f"{out} is up to date")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
