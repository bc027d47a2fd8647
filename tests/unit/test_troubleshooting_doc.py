"""docs/troubleshooting.md quotes only messages that exist, so the guide cannot rot.

Convention (also in an HTML comment at the top of the guide): a line starting with
`**Message:**` quotes real messages, each in its own code span; `<...>` is a placeholder for a
part that varies. Each quoted message must be found in a string in operator/kubemint/**/*.py
or in a CEL rule's message or messageExpression in crds/*.yaml.

Python strings are read with `ast`, so implicitly concatenated literals count as one string.
Where a string interpolates a value (an f-string field, `"..." + NAME`, a logging `%s`) the
guide must put a placeholder, and everything else must match exactly: a placeholder stands
for exactly one interpolated value, and `{x!r}` shows as `'<x>'` (repr quotes a string).
CEL messageExpressions are code, not templates: there a placeholder stands for any run of
characters (the expression between two literals) and only the literal parts must match.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / "docs" / "troubleshooting.md"
CRD_DIR = REPO_ROOT / "crds"
SOURCE_DIR = REPO_ROOT / "operator" / "kubemint"

COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
MESSAGE_LINE = re.compile(r"^\*\*Message:\*\*\s+(?P<rest>.+)$")
CODE_SPAN = re.compile(r"`([^`]+)`")
PLACEHOLDER = re.compile(r"(<[^<>]+>)")
HOLE = "\ufffc"  # where a source string interpolates a value
LOG_FORMAT = re.compile(r"%[sd]")


class Text(NamedTuple):
    """A message as the source has it; `code` for a CEL expression computing one."""

    value: str
    code: bool = False


# --- what the guide quotes -----------------------------------------------------------------


def quoted_messages(markdown: str) -> list[str]:
    """Every message on a `**Message:**` line, outside comments and fenced code blocks."""
    messages: list[str] = []
    fenced = False
    for line in COMMENT.sub("", markdown).splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else MESSAGE_LINE.match(line)
        if match:
            spans = CODE_SPAN.findall(match["rest"])
            assert spans, f"a Message: line without a quoted message: {line!r}"
            messages.extend(spans)
    return messages


def parts(message: str) -> list[str]:
    """The message split into fixed parts and `<placeholders>` (odd indexes)."""
    return PLACEHOLDER.split(message)


def pattern(message: str, code: bool) -> re.Pattern[str]:
    if code:
        fixed = [
            re.escape(p.strip()) if i % 2 == 0 else ".+?" for i, p in enumerate(parts(message))
        ]
        return re.compile(r"\s*".join(f for f in fixed if f), re.DOTALL)
    return re.compile(
        "".join(re.escape(p) if i % 2 == 0 else HOLE for i, p in enumerate(parts(message)))
    )


def matches(message: str, text: Text) -> bool:
    """Whether `text` holds the message: its fixed parts, with placeholders where it varies."""
    if not any(p.strip() for p in parts(message)[::2]):
        return False  # nothing fixed to check
    return pattern(message, text.code).search(text.value) is not None


# --- what the code and the CRDs say --------------------------------------------------------


def _template(node: ast.expr) -> str | None:
    """A string expression as text with HOLE for each interpolated value; None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return LOG_FORMAT.sub(HOLE, node.value)
    if isinstance(node, ast.JoinedStr):
        pieces: list[str] = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                pieces.append(value.value)
            elif isinstance(value, ast.FormattedValue) and value.conversion == ord("r"):
                pieces.append(f"'{HOLE}'")
            else:
                pieces.append(HOLE)
        return "".join(pieces)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _template(node.left), _template(node.right)
        if left is None and right is None:
            return None
        return (left if left is not None else HOLE) + (right if right is not None else HOLE)
    return None


def python_strings(source: str) -> Iterator[Text]:
    """The string expressions of a module (docstrings excluded: nobody sees them)."""
    tree = ast.parse(source)
    skipped = {
        id(statement.value)
        for statement in ast.walk(tree)
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
    }
    for node in ast.walk(tree):  # breadth first: a whole expression before its parts
        if not isinstance(node, ast.expr) or id(node) in skipped:
            continue
        text = _template(node)
        if text is None:
            continue
        skipped.update(id(child) for child in ast.walk(node) if child is not node)
        yield Text(text)


def crd_messages(node: Any) -> Iterator[Text]:
    """Every CEL rule's message and messageExpression, whitespace-normalised."""
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations", []):
            if "message" in rule:
                yield Text(" ".join(str(rule["message"]).split()))
            if "messageExpression" in rule:
                yield Text(" ".join(str(rule["messageExpression"]).split()), code=True)
        for child in node.values():
            yield from crd_messages(child)
    elif isinstance(node, list):
        for child in node:
            yield from crd_messages(child)


@cache
def corpus() -> tuple[Text, ...]:
    texts: list[Text] = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            texts.extend(crd_messages(document))
    for path in sorted(SOURCE_DIR.rglob("*.py")):
        texts.extend(python_strings(path.read_text(encoding="utf-8")))
    return tuple(texts)


def unknown_messages(messages: Iterable[str], texts: Iterable[Text]) -> list[str]:
    texts = tuple(texts)
    return [m for m in messages if not any(matches(m, t) for t in texts)]


# --- the guide -----------------------------------------------------------------------------


def test_the_guide_documents_its_quoting_convention() -> None:
    head = DOC.read_text(encoding="utf-8").split("-->", 1)[0]
    assert head.startswith("<!--")
    assert "**Message:**" in head
    assert "<like this>" in head


def test_the_guide_quotes_many_messages() -> None:
    messages = quoted_messages(DOC.read_text(encoding="utf-8"))
    assert len(set(messages)) >= 100  # some are quoted again where a second symptom shows them


def test_every_quoted_message_exists_in_the_crds_or_the_code() -> None:
    messages = quoted_messages(DOC.read_text(encoding="utf-8"))
    missing = unknown_messages(messages, corpus())
    assert not missing, (
        "docs/troubleshooting.md quotes messages that crds/*.yaml and operator/kubemint do not "
        "contain (renamed? misquoted? mark varying parts as <placeholders>):\n"
        + "\n".join(f"  {m}" for m in missing)
    )


@pytest.mark.parametrize(
    "section",
    [
        "`kubectl apply` is rejected",
        "An object stays `Ready=False`",
        "The token endpoint returns `invalid_client`",
        "`invalid_scope`, `invalid_target` or `access_denied`",
        "`invalid_grant` for jwt-bearer and token exchange",
        "HTTP 429 `slow_down`",
        "The resource server says `invalid_token`",
        "`/readyz` answers 503",
        "`kubemint token` fails",
    ],
)
def test_the_guide_has_a_section_per_symptom(section: str) -> None:
    assert f"\n## {section}\n" in DOC.read_text(encoding="utf-8")


def test_every_cel_message_of_the_crds_is_explained() -> None:
    """Each admission message (the static `message`, or the computed one) is in the guide."""
    quoted = quoted_messages(DOC.read_text(encoding="utf-8"))
    rules: list[dict[str, Any]] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            rules.extend(node.get("x-kubernetes-validations", []))
            for child in node.values():
                collect(child)
        elif isinstance(node, list):
            for child in node:
                collect(child)

    for path in sorted(CRD_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            collect(document)
    unexplained = []
    for rule in rules:
        texts = list(crd_messages({"x-kubernetes-validations": [rule]}))
        if not any(matches(message, text) for message in quoted for text in texts):
            unexplained.append(texts[0].value)
    assert not unexplained, f"admission messages missing from the guide: {unexplained}"


# --- the checker checks --------------------------------------------------------------------

FAKE_SOURCE = '''
"""A docstring: client exploded while quoting."""

def fail(name, count):
    raise ValueError(f"spec.thing: widget {name!r} is missing " f"({count} left)")

OTHER = "the gizmo " + SUFFIX
log.warning("lost %s (%s); retrying", name, why)
'''

FAKE_DOC = """\
<!-- convention -->
**Message:** `spec.thing: widget '<name>' is missing (<count> left)`
**Message:** `the gizmo <suffix>` `spec.thing: widget` `lost <what> (<why>); retrying`
```text
**Message:** `inside a fence: not a quote`
```
"""


def test_the_checker_accepts_exact_and_placeholder_quotes() -> None:
    texts = list(python_strings(FAKE_SOURCE))
    messages = quoted_messages(FAKE_DOC)
    assert messages == [
        "spec.thing: widget '<name>' is missing (<count> left)",
        "the gizmo <suffix>",
        "spec.thing: widget",
        "lost <what> (<why>); retrying",
    ]
    assert unknown_messages(messages, texts) == []


@pytest.mark.parametrize(
    "misquote",
    [
        "spec.thing: widget '<name>' is absent (<count> left)",  # a changed word
        "spec.thing: widget <name> is missing (<count> left)",  # lost the repr quotes
        "spec.thing: gadget '<name>' is missing",  # a wrong fixed part
        "(<count> left) spec.thing: widget '<name>' is missing",  # out of order
        "client exploded while quoting",  # only in a docstring
        "the gizmo is here",  # the placeholder filled in with a guess
        "the gizmo <a> and <b>",  # two placeholders where one value varies
        "lost <what>; retrying",  # a fixed part left out
        "<everything varies>",  # nothing fixed to check
    ],
)
def test_the_checker_rejects_a_misquoted_message(misquote: str) -> None:
    texts = list(python_strings(FAKE_SOURCE))
    doc = f"**Message:** `{misquote}`\n"
    assert unknown_messages(quoted_messages(doc), texts) == [misquote]


def test_the_checker_reads_crd_messages_and_message_expressions() -> None:
    crd = yaml.safe_load(
        """
        spec:
          x-kubernetes-validations:
            - rule: "true"
              message: >-
                spec.a must be
                shorter than spec.b
              messageExpression: "'spec.a is ' + self.a + ', too long'"
        """
    )
    texts = list(crd_messages(crd))
    assert unknown_messages(["spec.a must be shorter than spec.b"], texts) == []
    assert unknown_messages(["spec.a is <value>, too long"], texts) == []
    wrong = ["spec.a must be shorter than spec.c", "spec.a was <value>, too long", "<value>"]
    assert unknown_messages(wrong, texts) == wrong
