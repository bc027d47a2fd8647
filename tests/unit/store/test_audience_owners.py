"""The token server grants only the rules of the namespace that owns an audience, decided
from the ownership record (and the first claim where there is none), never from the oldest
live rule alone."""

from __future__ import annotations

from typing import Any

from kubemint.api.audiences import ASSIGNED, SOURCE_CLAIMED, OwnerRecord, encode, record_name
from kubemint.store.snapshot import build_snapshot

A = "https://calendar.test"
S0, S1, S2 = "2026-11-22T10:00:00Z", "2026-11-22T10:00:01Z", "2026-11-22T10:00:02Z"


def _rule(namespace: str, created: str, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": "r",
            "creationTimestamp": created,
            "annotations": annotations,
        },
        "spec": {"audience": A, "subjects": [{"kind": "OAuth2Client", "name": "x"}]},
    }


def _granting(
    *rules: dict[str, Any], records: tuple[dict[str, Any], ...] = (), **kw: Any
) -> set[str]:
    snapshot = build_snapshot(
        server_namespace="s",
        clients=[],
        accounts=[],
        rules=rules,
        signing_keys=[],
        secrets=[],
        audience_records=records,
        **kw,
    )
    return {r.ref.namespace for r in snapshot.rules.get(A, ())}


def _record(namespace: str, source: str = SOURCE_CLAIMED) -> dict[str, Any]:
    return encode(OwnerRecord(A, namespace, source), "s")


def test_the_recorded_owner_grants_even_when_a_refused_rule_is_older() -> None:
    rules = (_rule("evil", S0), _rule("cal", S2))
    assert _granting(*rules) == {"evil"}  # no record: first claim
    assert _granting(*rules, records=(_record("cal"),)) == {"cal"}


def test_nobody_grants_for_an_owner_without_rules() -> None:
    assert _granting(_rule("evil", S0), records=(_record("cal"),)) == set()


def test_a_released_audience_goes_to_the_next_claim_and_the_releasing_rule_grants_nothing() -> None:
    release = {"kubemint.io/release-audience": "true"}
    rules = (_rule("cal", S0, **release), _rule("evil", S1))
    assert _granting(*rules, records=(_record("cal"),)) == {"evil"}


def test_a_record_at_another_name_is_not_this_audiences_record() -> None:
    forged = _record("cal")
    forged["metadata"]["name"] = record_name("https://elsewhere")
    assert _granting(_rule("evil", S0), _rule("cal", S1), records=(forged,)) == {"evil"}


def test_in_assigned_mode_only_an_assignment_grants() -> None:
    rules = (_rule("cal", S0),)
    assert _granting(*rules, audience_ownership=ASSIGNED) == set()
    assert _granting(*rules, records=(_record("cal"),), audience_ownership=ASSIGNED) == set()
    assigned = (_record("cal", "assigned"),)
    assert _granting(*rules, records=assigned, audience_ownership=ASSIGNED) == {"cal"}


def test_a_rule_with_a_broken_condition_still_counts_as_a_claim() -> None:
    """As in the operator's index: otherwise the two would disagree on the first claim."""
    broken = _rule("cal", S0)
    broken["spec"]["when"] = "claims.iss == "
    assert _granting(broken, _rule("evil", S1)) == set()
