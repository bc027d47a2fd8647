"""AccessRule `spec.http` entries and which of them decides a request.

The most specific matching entry decides, the way Ingress paths do: the longest matching
path prefix, then an exact host over a wildcard over any host, then listed methods over
any method. Entries equally specific are alternatives: holding the scopes of one suffices.
A path prefix matches whole segments (`/api` matches `/api` and `/api/x`, not `/apix`); a
`*.` host matches exactly one more label (`*.example.com` matches `a.example.com`, not
`a.b.example.com` nor `example.com`), as in Kubernetes Ingress.
"""

from __future__ import annotations

from collections.abc import Iterable

from kubemint.api.accessrule import HttpRule
from kubemint.authz.requests import OriginalRequest


def specificity(rule: HttpRule, request: OriginalRequest) -> tuple[int, int, int] | None:
    """How closely `rule` matches `request`, or None when it does not match."""
    if rule.methods and request.method not in rule.methods:
        return None
    host_rank = max((_host_rank(h, request.host) for h in rule.hosts), default=0)
    if rule.hosts and host_rank == 0:
        return None
    path_length = max((_path_length(p, request.path) for p in rule.paths), default=0)
    if rule.paths and path_length < 0:
        return None
    return (max(path_length, 0), host_rank, 1 if rule.methods else 0)


def deciding(rules: Iterable[HttpRule], request: OriginalRequest) -> list[HttpRule]:
    """The most specific entries matching `request` (empty when none matches)."""
    best: tuple[int, int, int] | None = None
    chosen: list[HttpRule] = []
    for rule in rules:
        rank = specificity(rule, request)
        if rank is None:
            continue
        if best is None or rank > best:
            best, chosen = rank, [rule]
        elif rank == best:
            chosen.append(rule)
    return chosen


def _path_length(prefix: str, path: str) -> int:
    """len(prefix) when it matches `path` at a segment boundary, else -1."""
    if prefix == "/":
        return 0  # the same as listing no paths
    if path == prefix or path.startswith(prefix + "/"):
        return len(prefix)
    return -1


def _host_rank(pattern: str, host: str) -> int:
    """2 for an exact match, 1 for a one-label wildcard match, 0 for none."""
    if pattern == host:
        return 2
    if pattern.startswith("*."):
        label, _, rest = host.partition(".")
        return 1 if label and rest == pattern[2:] else 0
    return 0
