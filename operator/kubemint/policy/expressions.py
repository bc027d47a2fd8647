"""AccessRule `when` conditions: CEL over `request` and `claims`.

CEL is the Kubernetes ecosystem's expression language (CRD validation rules, admission
policies). Expressions are compiled once; compile errors name the position, and referring
to any variable other than `request` and `claims` is a compile error too, so a typo cannot
silently evaluate to "deny" forever. Evaluation errors (a missing claim) count as false.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on first use: `cel` pulls in a CLI stack (~12 MB, 150 ms)
    import cel

VARIABLES = frozenset({"request", "claims"})
# Names bound by CEL macros (`x` in `list.exists(x, x > 1)`) are not free variables.
_MACRO_VARIABLE = re.compile(r"\.(?:all|exists|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")
MAX_LENGTH = 4096


class ExpressionError(ValueError):
    pass


@dataclass(frozen=True)
class Condition:
    source: str
    program: cel.Program

    def allows(self, request: dict[str, Any], claims: dict[str, Any]) -> bool:
        """True only when the expression evaluates to boolean true."""
        try:
            return self.program.execute({"request": request, "claims": claims}) is True
        except Exception:  # any evaluation failure denies
            return False


def compile_condition(source: str, field: str = "spec.when") -> Condition:
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"{field}: longer than {MAX_LENGTH} characters")
    import cel

    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        raise ExpressionError(f"{field}: {_first_line(str(exc))}") from None
    bound = set(_MACRO_VARIABLE.findall(source))
    unknown = sorted(set(program.variables()) - VARIABLES - bound)
    if unknown:
        raise ExpressionError(
            f"{field}: unknown variable {', '.join(unknown)}; use request and claims"
        )
    return Condition(source, program)


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0][:300] if message.strip() else "invalid expression"
