"""Which AccessRule http entry decides a request: most specific wins, ties are alternatives."""

from __future__ import annotations

import pytest

from kubemint.api.accessrule import HttpRule
from kubemint.authz.requests import OriginalRequest
from kubemint.authz.rules import deciding, specificity

HOST = "calendar.example.com"


def _req(path: str, method: str = "GET", host: str = HOST) -> OriginalRequest:
    return OriginalRequest(method, host, path)


def _rule(**spec: object) -> HttpRule:
    return HttpRule.from_spec(spec)


@pytest.mark.parametrize(
    ("spec", "request_", "matches"),
    [
        ({"paths": ["/api"]}, _req("/api"), True),
        ({"paths": ["/api"]}, _req("/api/events"), True),
        ({"paths": ["/api/"]}, _req("/api/events"), True),
        ({"paths": ["/api"]}, _req("/apix"), False),
        ({"paths": ["/api"]}, _req("/"), False),
        ({"paths": ["/"]}, _req("/anything"), True),
        ({}, _req("/anything", "DELETE", "other.example.com"), True),
        ({"methods": ["GET", "HEAD"]}, _req("/x", "HEAD"), True),
        ({"methods": ["GET"]}, _req("/x", "POST"), False),
        ({"hosts": [HOST]}, _req("/"), True),
        ({"hosts": ["CALENDAR.example.com"]}, _req("/"), True),
        ({"hosts": [HOST]}, _req("/", host="files.example.com"), False),
        ({"hosts": ["*.example.com"]}, _req("/"), True),
        ({"hosts": ["*.example.com"]}, _req("/", host="a.calendar.example.com"), False),
        ({"hosts": ["*.example.com"]}, _req("/", host="example.com"), False),
        ({"hosts": ["*.example.com"]}, _req("/", host="evilexample.com"), False),
    ],
)
def test_matching(spec: dict[str, object], request_: OriginalRequest, matches: bool) -> None:
    assert (specificity(_rule(**spec), request_) is not None) is matches


def test_the_longest_path_prefix_decides() -> None:
    broad = _rule(paths=["/api"], scopes=["api"])
    narrow = _rule(paths=["/api/events"], scopes=["event.view"])
    assert deciding([broad, narrow], _req("/api/events/1")) == [narrow]
    assert deciding([broad, narrow], _req("/api/tasks")) == [broad]


def test_exact_host_beats_wildcard_beats_any_and_methods_beat_any_method() -> None:
    anyhost = _rule(paths=["/api"])
    wildcard = _rule(paths=["/api"], hosts=["*.example.com"])
    exact = _rule(paths=["/api"], hosts=[HOST])
    assert deciding([anyhost, wildcard, exact], _req("/api")) == [exact]
    assert deciding([anyhost, wildcard], _req("/api")) == [wildcard]
    by_method = _rule(paths=["/api"], methods=["POST"], scopes=["event.create"])
    assert deciding([anyhost, by_method], _req("/api", "POST")) == [by_method]
    assert deciding([anyhost, by_method], _req("/api", "GET")) == [anyhost]


def test_path_specificity_outranks_host_specificity() -> None:
    exact_host = _rule(hosts=[HOST], paths=["/"])
    long_path = _rule(paths=["/admin"], scopes=["admin"])
    assert deciding([exact_host, long_path], _req("/admin/x")) == [long_path]


def test_equally_specific_entries_are_all_returned() -> None:
    first = _rule(paths=["/api"], scopes=["a"])
    second = _rule(paths=["/api"], scopes=["b"])
    assert deciding([first, second], _req("/api/x")) == [first, second]


def test_nothing_matches() -> None:
    assert deciding([_rule(paths=["/api"])], _req("/other")) == []
    assert deciding([], _req("/")) == []
