"""The rendered RBAC is least-privilege: no wildcards, Secrets for the token server only through
a Role in its own namespace, and no writes by the token server except its revocation store."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.conftest import VALUE_SETS, documents

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind"}
NAMESPACE = "kubemint-system"


def grants(manifest: str, service_account: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(role kind, role namespace or None, rule) for every rule bound to the ServiceAccount."""
    docs = documents(manifest)
    roles = {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
    }
    found = []
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subject = {"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE}
        if subject not in binding["subjects"]:
            continue
        ref = binding["roleRef"]
        where = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], where, ref["name"]))
        if role is None:
            assert ref["name"] == "system:service-account-issuer-discovery", ref
            continue
        found += [(ref["kind"], where, rule) for rule in role["rules"]]
    return found


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_no_rule_uses_a_wildcard(rendered: dict[str, str], name: str) -> None:
    for doc in documents(rendered[name]):
        if doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                    assert not any("*" in value for value in rule.get(field, [])), (doc, rule)
                assert "nonResourceURLs" not in rule


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_token_server_reads_secrets_only_in_its_namespace(
    rendered: dict[str, str], name: str
) -> None:
    rules = grants(rendered[name], "kubemint-token-server")
    assert rules, "the token server is bound to no role"
    secrets = [(kind, where, rule) for kind, where, rule in rules if "secrets" in rule["resources"]]
    assert secrets, "the token server cannot read its signing keys"
    for kind, where, rule in secrets:
        assert (kind, where) == ("Role", NAMESPACE)
        assert set(rule["verbs"]) == {"get", "list", "watch"}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_token_server_writes_only_configmaps_in_its_namespace(
    rendered: dict[str, str], name: str
) -> None:
    for kind, where, rule in grants(rendered[name], "kubemint-token-server"):
        if WRITE_VERBS & set(rule["verbs"]):
            assert (kind, where) == ("Role", NAMESPACE), rule
            assert rule["apiGroups"] == [""]
            assert rule["resources"] == ["configmaps"]


def _cluster_rules(manifest: str, group: str) -> list[dict[str, Any]]:
    return [
        rule
        for kind, _, rule in grants(manifest, "kubemint-token-server")
        if kind == "ClusterRole" and group in rule["apiGroups"]
    ]


def test_token_server_reads_the_four_kinds_cluster_wide(rendered: dict[str, str]) -> None:
    kinds = {"oauth2clients", "serviceaccounts", "signingkeys", "accessrules"}
    cluster_rules = _cluster_rules(rendered["default"], "kubemint.io")
    assert len(cluster_rules) == 1
    assert cluster_rules[0]["apiGroups"] == ["kubemint.io"]
    assert set(cluster_rules[0]["resources"]) == kinds
    assert cluster_rules[0]["verbs"] == ["get", "list", "watch"]


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_token_server_only_lists_and_watches_core_objects_cluster_wide_and_only_service_accounts(
    rendered: dict[str, str], name: str
) -> None:
    """Revocation: a deleted Kubernetes ServiceAccount's projected tokens are refused, so the
    token server watches which ServiceAccounts exist; it may not get one, mint its tokens or
    read anything else of the core group outside its namespace."""
    core = _cluster_rules(rendered[name], "")
    assert core == [
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["list", "watch"]}
    ]
    cluster_groups = {
        group
        for kind, _, rule in grants(rendered[name], "kubemint-token-server")
        if kind == "ClusterRole"
        for group in rule["apiGroups"]
    }
    assert cluster_groups == {"kubemint.io", ""}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_token_server_reads_trusted_issuers_only_in_its_namespace(
    rendered: dict[str, str], name: str
) -> None:
    """A TrustedIssuer means "a cluster admin vouches for this issuer" only in the token
    server's namespace; the token server cannot even list those elsewhere."""
    rules = [
        (kind, where, rule)
        for kind, where, rule in grants(rendered[name], "kubemint-token-server")
        if "trustedissuers" in rule["resources"]
    ]
    assert rules, "the token server cannot read TrustedIssuers"
    for kind, where, rule in rules:
        assert (kind, where) == ("Role", NAMESPACE)
        assert rule["apiGroups"] == ["kubemint.io"]
        assert rule["resources"] == ["trustedissuers"]
        assert set(rule["verbs"]) == {"get", "list", "watch"}


def test_operator_writes_secrets_and_status_and_only_its_own_lease(
    rendered: dict[str, str],
) -> None:
    rules = grants(rendered["default"], "kubemint-operator")

    def verbs(resource: str, group: str = "") -> set[str]:
        return {
            verb
            for _, _, rule in rules
            if resource in rule["resources"] and group in rule["apiGroups"]
            for verb in rule["verbs"]
        }

    assert verbs("secrets") == {"get", "list", "watch", "create", "update", "patch", "delete"}
    for plural in ("oauth2clients", "serviceaccounts", "signingkeys", "accessrules"):
        extra = {"create"} if plural == "signingkeys" else set()  # the chart's, see below
        assert verbs(plural, "kubemint.io") == {"get", "list", "watch", "patch"} | extra
        assert {"patch", "update"} <= verbs(f"{plural}/status", "kubemint.io")
        assert verbs(f"{plural}/finalizers", "kubemint.io") == {"update"}
        assert "delete" not in verbs(plural, "kubemint.io")
    # TrustedIssuers: status, and no finalizers (the operator writes nothing for them).
    assert verbs("trustedissuers", "kubemint.io") == {"get", "list", "watch", "patch"}
    assert verbs("trustedissuers/status", "kubemint.io") == {"get", "patch", "update"}
    assert not verbs("trustedissuers/finalizers", "kubemint.io")
    # It creates SigningKeys (the chart's default one) only in the release namespace.
    creates = [
        (k, w) for k, w, r in rules if "signingkeys" in r["resources"] and "create" in r["verbs"]
    ]
    assert creates == [("Role", NAMESPACE)]
    leases = [
        (kind, where, rule)
        for kind, where, rule in rules
        if rule["apiGroups"] == ["coordination.k8s.io"]
    ]
    assert {(kind, where) for kind, where, _ in leases} == {("Role", NAMESPACE)}
    for _, _, rule in leases:
        if rule["verbs"] != ["create"]:  # create cannot be limited by name
            assert rule["resourceNames"] == ["kubemint-operator"]


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_operator_writes_configmaps_only_in_its_namespace_and_only_reads_namespaces(
    rendered: dict[str, str], name: str
) -> None:
    """Audience ownership records live in the release namespace; the operator reads the
    owning Namespace's uid (for the record's ownerReference) and nothing else about it."""
    rules = grants(rendered[name], "kubemint-operator")
    configmaps = [(k, w, r) for k, w, r in rules if "configmaps" in r["resources"]]
    assert configmaps, "the operator cannot write audience ownership records"
    for kind, where, rule in configmaps:
        assert (kind, where) == ("Role", NAMESPACE), rule
        assert rule["resources"] == ["configmaps"]
        assert set(rule["verbs"]) == {"get", "list", "watch", "create", "update", "delete"}
    namespaces = [r for _, _, r in rules if "namespaces" in r["resources"]]
    assert [r["verbs"] for r in namespaces] == [["get"]]
