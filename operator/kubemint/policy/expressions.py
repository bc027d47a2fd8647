"""`when` conditions: CEL over `request`, `claims` and (AccessRules only) `tenantClaims`.

CEL is the Kubernetes ecosystem's expression language (CRD validation rules, admission
policies). Expressions are compiled once; compile errors name the position, and referring
to any variable the condition does not get is a compile error too, so a typo cannot
silently evaluate to "deny" forever. Evaluation errors (a missing claim) count as false.

What goes into `claims` and `tenantClaims` is decided in `kubemint.oauth.claim_sources`:
an AccessRule's `claims` are only ever claims a cluster-trusted source verified. An issuer's
own `when` (in a ServiceAccount) sees that issuer's claims as `claims`: it is its namespace's
own condition on its own issuer, so there is nobody else's word to keep apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on first use: `cel` pulls in a CLI stack (~12 MB, 150 ms)
    import cel

RULE_VARIABLES = frozenset({"request", "claims", "tenantClaims"})  # AccessRule spec.when
ISSUER_VARIABLES = frozenset({"request", "claims"})  # a ServiceAccount issuer's when
# Names bound by CEL macros (`x` in `list.exists(x, x > 1)`) are not free variables.
_MACRO_VARIABLE = re.compile(r"\.(?:all|exists|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")
MAX_LENGTH = 4096


class ExpressionError(ValueError):
    pass


@dataclass(frozen=True)
class Condition:
    source: str
    program: cel.Program

    def allows(
        self,
        request: dict[str, Any],
        claims: dict[str, Any],
        tenant_claims: dict[str, Any] | None = None,
    ) -> bool:
        """True only when the expression evaluates to boolean true."""
        variables = {"request": request, "claims": claims, "tenantClaims": tenant_claims or {}}
        try:
            return self.program.execute(variables) is True
        except Exception:  # any evaluation failure denies
            return False


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
    return Condition(source, program)


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0][:300] if message.strip() else "invalid expression"
