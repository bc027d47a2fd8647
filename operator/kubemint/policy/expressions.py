"""`when` conditions: CEL over `request`, `claims` and (AccessRules only) `tenantClaims`.

CEL is the Kubernetes ecosystem's expression language (CRD validation rules, admission
policies). Expressions are compiled once; compile errors name the position, and referring
to any variable the condition does not get is a compile error too, so a typo cannot
silently evaluate to "deny" forever. Evaluation errors (a missing claim) count as false.

What goes into `claims` and `tenantClaims` is decided in `kubemint.oauth.claim_sources`:
an AccessRule's `claims` are only ever claims a cluster-trusted source verified. An issuer's
own `when` (in a ServiceAccount) sees that issuer's claims as `claims`: it is its namespace's
own condition on its own issuer, so there is nobody else's word to keep apart.

Expressions are written by tenants and evaluated in the shared token server, so their cost is
bounded twice. At compile time: at most MAX_LENGTH characters and comprehension macros nested
at most MAX_NESTING deep (each level multiplies the work; the operator reports a deeper one as
InvalidExpression). At evaluation: the CEL library has no cost or time limit and holds the GIL
while it runs, so the token server installs an `Evaluator` that runs conditions in worker
processes with a deadline (`kubemint.policy.sandbox`); one that cannot answer in time raises
EvaluationUnavailable, which the caller turns into temporarily_unavailable for that request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # imported on first use: `cel` pulls in a CLI stack (~12 MB, 150 ms)
    import cel

RULE_VARIABLES = frozenset({"request", "claims", "tenantClaims"})  # AccessRule spec.when
ISSUER_VARIABLES = frozenset({"request", "claims"})  # a ServiceAccount issuer's when
# Names bound by CEL macros (`x` in `list.exists(x, x > 1)`) are not free variables.
_MACRO_VARIABLE = re.compile(r"\.(?:all|exists|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")
MAX_LENGTH = 1024  # as the CRDs' maxLength
MAX_NESTING = 2
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_TOKEN = re.compile(
    r"""(?P<string>[rRbB]{0,2}(?:'{3}.*?'{3}|"{3}.*?"{3}|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"))"""
    r"|(?P<macro>\.\s*(?P<name>[A-Za-z_]\w*)\s*\()|(?P<open>[(\[{])|(?P<close>[)\]}])",
    re.DOTALL,
)


class ExpressionError(ValueError):
    pass


class EvaluationUnavailable(Exception):
    """A condition that could not be evaluated within its budget: neither true nor false.

    `reason` is "timeout", "busy" (no worker free in time), "quarantined" (it recently ran
    out of time: refused without running for a while) or "failed" (the worker died)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"condition not evaluated: {reason}")
        self.reason = reason


class Evaluator(Protocol):
    def evaluate(
        self,
        condition: Condition,
        request: Mapping[str, Any],
        claims: Mapping[str, Any],
        owner: str,
        tenant_claims: Mapping[str, Any],
    ) -> bool: ...


def variables(
    request: Mapping[str, Any],
    claims: Mapping[str, Any],
    tenant_claims: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What an expression is evaluated with; `tenantClaims` is empty unless given."""
    return {"request": request, "claims": claims, "tenantClaims": tenant_claims or {}}


class InProcess:
    """Evaluate in this thread, unbounded: for the operator, tests and tools, never for a
    server that tenants share."""

    def evaluate(
        self,
        condition: Condition,
        request: Mapping[str, Any],
        claims: Mapping[str, Any],
        owner: str,
        tenant_claims: Mapping[str, Any] | None = None,
    ) -> bool:
        try:
            return condition.program.execute(variables(request, claims, tenant_claims)) is True
        except Exception:  # any evaluation failure denies
            return False


_evaluator: Evaluator = InProcess()


def install(evaluator: Evaluator) -> Evaluator:
    """Make `evaluator` evaluate every condition of this process; returns the previous one.
    The token server installs its sandbox once at start-up."""
    global _evaluator
    previous, _evaluator = _evaluator, evaluator
    return previous


@dataclass(frozen=True)
class Condition:
    source: str
    program: cel.Program

    def allows(
        self,
        request: Mapping[str, Any],
        claims: Mapping[str, Any],
        *,
        tenant_claims: Mapping[str, Any] | None = None,
        owner: str = "",
    ) -> bool:
        """True only when the expression evaluates to boolean true. `tenant_claims` are
        `tenantClaims` (AccessRules only; empty when not given). `owner` (the namespace whose
        object holds the expression) shares evaluation capacity fairly between tenants.
        Raises EvaluationUnavailable when the installed evaluator could not decide in time."""
        return _evaluator.evaluate(self, request, claims, owner, tenant_claims=tenant_claims or {})


def compile_condition(
    source: str, field: str = "spec.when", variables: frozenset[str] = RULE_VARIABLES
) -> Condition:
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"{field}: longer than {MAX_LENGTH} characters")
    import cel

    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        raise ExpressionError(f"{field}: {_first_line(str(exc))}") from None
    bound = set(_MACRO_VARIABLE.findall(source))
    unknown = sorted(set(program.variables()) - variables - bound)
    if unknown and "tenantClaims" in variables:
        raise ExpressionError(
            f"{field}: unknown variable {', '.join(unknown)}; use request, claims and tenantClaims"
        )
    if unknown:
        raise ExpressionError(
            f"{field}: unknown variable {', '.join(unknown)}; use request and claims"
        )
    depth = nesting(source)
    if depth > MAX_NESTING:
        raise ExpressionError(
            f"{field}: comprehensions (all, exists, exists_one, map, filter) nested {depth} "
            f"deep; at most {MAX_NESTING} (each level multiplies the cost)"
        )
    return Condition(source, program)


def nesting(source: str) -> int:
    """How deep comprehension macros nest in `source`: `l.all(x, m.exists(y, …))` is 2.
    A scan of brackets outside string literals; it runs after `cel.compile` accepted the
    source, so brackets are balanced."""
    stack: list[bool] = []  # per open bracket: does it open a macro's arguments?
    depth = deepest = 0
    for token in _TOKEN.finditer(source):
        if token.group("string") is not None:
            continue
        if token.group("macro") is not None:
            is_macro = token.group("name") in _MACROS
            stack.append(is_macro)
            depth += is_macro
            deepest = max(deepest, depth)
        elif token.group("open") is not None:
            stack.append(False)
        elif stack:
            depth -= stack.pop()
    return deepest


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0][:300] if message.strip() else "invalid expression"
