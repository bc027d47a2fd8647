"""Audience ownership attacked by a tenant (first-claim mode, the default).

A victim tenant owns an audience; an attacker tenant (rights only in its own namespaces)
claims it too and waits. Whatever the victim does with its own rules — rename, re-create,
delete them all — the attacker never inherits the audience: no token, no forward-auth rule.
Ownership moves only by an explicit act: the owner's release, or the owning namespace's
deletion. And a rule's status says nothing about namespaces its reader cannot see.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.audience_setup import (
    HOST,
    RELEASE,
    Api,
    Credentials,
    client,
    condition,
    hold,
    refused,
    rule,
    status,
    wait_reason,
)
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import wait_for
from tests.integration.tenants import Tenant, TenantFactory

VICTIM_HTTP = [{"hosts": [HOST], "paths": ["/api"], "methods": ["GET"], "scopes": ["read"]}]
# What the attacker's rule would do at forward-auth if it ever applied: open /admin to any
# token for the audience, and lock the victim's clients out of /api.
ATTACKER_HTTP = [
    {"hosts": [HOST], "paths": ["/admin"], "scopes": []},
    {"hosts": [HOST], "paths": ["/api"], "scopes": ["admin"]},
]


class Scene:
    """Victim owns `audience` with rule `api`; attacker's rule `grab` claims it a second later."""

    def __init__(self, tenants: TenantFactory, server: RunningServer) -> None:
        base = f"t{uuid.uuid4().hex[:6]}"
        self.victim: Tenant = tenants(base)
        self.attacker: Tenant = tenants(base + "-a")
        self.audience = f"https://api-{uuid.uuid4().hex[:8]}.test"  # names no namespace
        self.api = Api(server, self.audience)
        self.mine: Credentials = client(self.victim, "app", self.audience, ["read"])
        self.victim.apply(self.victim_rule("api"))
        wait_reason(self.victim, "api", "Reconciled")
        self.victim_token = wait_for(
            lambda: self.api.access_token(self.mine, "read"), "the victim's token"
        )
        time.sleep(1.1)  # a later second: same-second claims tie (unit-tested)
        self.theirs: Credentials = client(self.attacker, "thief", self.audience, ["read", "admin"])
        self.attacker.apply(
            rule(self.attacker, "grab", self.audience, "thief", ["read", "admin"], ATTACKER_HTTP)
        )
        wait_reason(self.attacker, "grab", "AudienceConflict")

    def victim_rule(self, name: str, **annotations: str) -> dict[str, object]:
        return rule(self.victim, name, self.audience, "app", ["read"], VICTIM_HTTP, annotations)

    def attacker_refused(self) -> str | None:
        response = self.api.token(self.theirs, "admin")
        if not refused(response):
            return f"the attacker's client got {response.status_code} {response.text}"
        response = self.api.token(self.theirs, "read")
        if not refused(response):
            return f"the attacker's client got {response.status_code} {response.text}"
        if (code := self.api.forward_auth(self.victim_token, "GET", "/admin")) != 403:
            return f"the attacker's forward-auth rule applies: /admin answered {code}"
        return None

    def victim_served(self) -> str | None:
        if self.api.access_token(self.mine, "read") is None:
            return f"the victim's client was refused: {self.api.token(self.mine, 'read').text}"
        if (code := self.api.forward_auth(self.victim_token, "GET", "/api/events")) != 200:
            return f"the victim's forward-auth rule does not apply: /api answered {code}"
        return None

    def unchanged(self) -> str | None:
        return self.attacker_refused() or self.victim_served()


@pytest.fixture
def scene(
    operator: RunningOperator, token_server: RunningServer, tenants: TenantFactory
) -> Iterator[Scene]:
    made = Scene(tenants, token_server)
    yield made
    made.api.close()


def test_a_refused_rule_never_inherits_the_audience_when_the_owner_renames_or_recreates(
    scene: Scene,
) -> None:
    victim, attacker = scene.victim, scene.attacker
    hold(scene.unchanged, 1, "before anything happens")

    # A rename as GitOps does it: the new rule is applied, then the old one pruned.
    victim.apply(scene.victim_rule("api-v2"))
    wait_reason(victim, "api-v2", "Reconciled")
    victim.kubectl("delete", "accessrule", "api", "-n", victim.namespace)
    hold(scene.unchanged, 5, "after the rename")

    # A re-create (helm uninstall + install): for a moment the victim has no rule at all.
    victim.kubectl("delete", "accessrule", "api-v2", "-n", victim.namespace)
    hold(scene.attacker_refused, 3, "while the victim has no rule")
    victim.apply(scene.victim_rule("api"))
    wait_for(lambda: scene.victim_served() is None, "the victim to be served again")
    hold(scene.unchanged, 3, "after the re-create")

    assert wait_reason(victim, "api", "Reconciled")
    assert status(victim, "api")["audienceOwner"] == victim.namespace
    wait_reason(attacker, "grab", "AudienceConflict")


def test_ownership_survives_deleting_every_rule_and_moves_only_on_an_explicit_release(
    scene: Scene,
) -> None:
    victim, attacker = scene.victim, scene.attacker
    victim.kubectl("delete", "accessrule", "api", "-n", victim.namespace)
    hold(scene.attacker_refused, 5, "after the owner deleted every rule")
    assert condition(attacker, "grab")["reason"] == "AudienceConflict"

    # The owner gives the audience up: a rule carrying the release annotation.
    started = time.monotonic()
    victim.apply(scene.victim_rule("api", **{RELEASE: "true"}))
    wait_reason(attacker, "grab", "Reconciled")
    converged = time.monotonic() - started
    assert converged < 10, f"statuses took {converged:.1f}s to follow the release"
    print(f"\nthe waiting rule was Ready {converged:.2f}s after the release")
    wait_for(lambda: scene.api.access_token(scene.theirs, "read"), "the new owner's token")
    assert refused(scene.api.token(scene.mine, "read"))
    assert wait_reason(victim, "api", "AudienceReleased")
    assert "audienceOwner" not in status(victim, "api")

    # Dropping the annotation again is a claim like any other: the audience is taken.
    victim.apply(scene.victim_rule("api"))
    wait_reason(victim, "api", "AudienceConflict")
    assert refused(scene.api.token(scene.mine, "read"))


def test_a_release_by_anyone_but_the_owner_changes_nothing(scene: Scene) -> None:
    attacker = scene.attacker
    attacker.apply(
        rule(
            attacker,
            "grab",
            scene.audience,
            "thief",
            ["read", "admin"],
            ATTACKER_HTTP,
            {RELEASE: "true"},
        )
    )
    wait_reason(attacker, "grab", "AudienceReleased")
    hold(scene.unchanged, 3, "after the attacker's release")
    assert condition(scene.victim, "api")["status"] == "True"


def test_deleting_the_owning_namespace_releases_its_audiences(
    scene: Scene, operator: RunningOperator
) -> None:
    started = time.monotonic()
    operator.cluster.kubectl("delete", "namespace", scene.victim.namespace, "--wait=false")
    wait_reason(scene.attacker, "grab", "Reconciled", timeout=90)
    print(f"\nthe next claim owned the audience {time.monotonic() - started:.1f}s later")
    wait_for(lambda: scene.api.access_token(scene.theirs, "read"), "the next owner's token")


def test_a_rule_status_says_nothing_about_other_namespaces(scene: Scene) -> None:
    victim, attacker = scene.victim, scene.attacker
    grab = status(attacker, "grab")
    ready = condition(attacker, "grab")
    assert "audienceOwner" not in grab
    assert victim.namespace not in ready["message"]
    assert ready["message"].startswith(f"spec.audience: '{scene.audience}'")

    # Naming another namespace's client that exists, and one that does not, reads the same.
    own = {"kind": "OAuth2Client", "name": "thief"}
    missing_own = {"kind": "OAuth2Client", "name": "later"}
    for name, foreign in (("probe-exists", "app"), ("probe-missing", "no-such-client")):
        subjects = [
            own,
            missing_own,
            {"kind": "OAuth2Client", "namespace": victim.namespace, "name": foreign},
        ]
        attacker.apply(
            rule(attacker, name, f"https://{name}.{attacker.namespace}.test", "", [], None, None,
                 subjects)
        )  # fmt: skip
        wait_reason(attacker, name, "Reconciled")

    def seen(name: str) -> tuple[object, str, str]:
        found = status(attacker, name)
        resolved = condition(attacker, name, "SubjectsResolved")
        return found.get("unresolvedSubjects"), resolved["status"], resolved["message"]

    exists, missing = seen("probe-exists"), seen("probe-missing")
    assert exists == missing
    assert exists[0] == [f"OAuth2Client/{attacker.namespace}/later"]
    assert exists[1:] == (
        "False",
        f"spec.subjects: OAuth2Client/{attacker.namespace}/later do not exist",
    )
