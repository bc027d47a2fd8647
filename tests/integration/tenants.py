"""Tenants as the threat model defines them: real users with RBAC only in their own namespaces.

A tenant authenticates with a client certificate from the test cluster's CA and may create
the four kubemint kinds, Secrets, ConfigMaps and Kubernetes ServiceAccounts (and their tokens)
in its namespaces and nowhere else. Attack tests act through `Tenant.kubectl` / `Tenant.apply`
so that the API server's authorization, not the test's good manners, is what limits them.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from kubemint.devcluster import ControlPlane
from kubemint.devcluster.controlplane import ControlPlaneError

ROLE = "kubemint-test-tenant"
RBAC = "rbac.authorization.k8s.io"
TENANT_ROLE = f"""\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {ROLE}}}
rules:
  - apiGroups: [kubemint.io]
    resources: [oauth2clients, serviceaccounts, signingkeys, accessrules, trustedissuers]
    verbs: ["*"]
  - apiGroups: [""]
    resources: [secrets, configmaps, serviceaccounts]
    verbs: ["*"]
  - apiGroups: [""]
    resources: [serviceaccounts/token]
    verbs: [create]
"""


@dataclass
class Tenant:
    """One team: a user and the namespaces it may write in."""

    cluster: ControlPlane
    user: str
    namespaces: tuple[str, ...]
    kubeconfig: Path
    _cache: Path = field(init=False)

    def __post_init__(self) -> None:
        self._cache = self.kubeconfig.with_suffix(".cache")

    @property
    def namespace(self) -> str:
        return self.namespaces[0]

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [
                str(self.cluster.binaries.kubectl),
                f"--kubeconfig={self.kubeconfig}",
                f"--cache-dir={self._cache}",
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"tenant {self.user}: kubectl {' '.join(args)} failed: {result.stderr.strip()}"
            )
        return result

    def apply(self, *objects: dict[str, Any]) -> None:
        for obj in objects:
            self.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(obj))

    def can(self, verb: str, resource: str, namespace: str) -> bool:
        result = self.kubectl("auth", "can-i", verb, resource, "-n", namespace, check=False)
        return result.stdout.strip() == "yes"


class TenantFactory(Protocol):
    def __call__(self, *namespaces: str) -> Tenant: ...


def _rolebinding(namespace: str, user: str) -> str:
    return json.dumps(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"tenant-{user}", "namespace": namespace},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": ROLE},
            "subjects": [{"apiGroup": RBAC, "kind": "User", "name": user}],
        }
    )


@pytest.fixture
def tenants(cluster: ControlPlane) -> Iterator[TenantFactory]:
    """Make tenants: `tenants("team", "team-a")` creates those namespaces (the threat model
    lets a tenant pick namespace names) and a user with rights only there."""
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=TENANT_ROLE)
    created: list[str] = []

    def make(*namespaces: str) -> Tenant:
        user = f"tenant-{uuid.uuid4().hex[:8]}"
        for namespace in namespaces:
            if cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0:
                cluster.kubectl("create", "namespace", namespace)
                created.append(namespace)
            cluster.kubectl("apply", "-f", "-", stdin=_rolebinding(namespace, user))
        tenant = Tenant(cluster, user, namespaces, cluster.user_kubeconfig(user))
        assert tenant.can("create", "oauth2clients.kubemint.io", namespaces[0])
        return tenant

    yield make
    for namespace in created:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
