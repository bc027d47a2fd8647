"""Fixtures for the chart tests: a helm binary, rendering, and the shared test control plane."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemint.devcluster import layout
from kubemint.devcluster.helm import resolve_helm
from tests.integration.conftest import cluster, namespace  # noqa: F401

CHART = layout.repo_root() / "charts" / "kubemint"
RELEASE = "kubemint"


@pytest.fixture(scope="session")
def helm() -> Path:
    """helm from $HELM or the cache (built from tests/envtest/helm on first use)."""
    return resolve_helm()


def helm_run(
    helm: Path, *args: str, values: dict[str, Any] | None = None, tmp: Path
) -> subprocess.CompletedProcess[str]:
    """Run helm on the chart with `values` in a values file; never raises on failure."""
    cmd = [str(helm), *args]
    if values is not None:
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        cmd += ["-f", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def render(helm: Path, values: dict[str, Any], tmp: Path, where: str = "kubemint-system") -> str:
    """`helm template` output for `values`; fails the test with helm's message on error."""
    result = helm_run(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        where,
        values=values,
        tmp=tmp,
    )
    if result.returncode != 0:
        pytest.fail(f"helm template failed: {result.stderr}")
    return result.stdout


def documents(manifest: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


# Values for a release on the session's cluster, whose CRDs were installed from crds/ (owned by
# no release): the release must not render them (templates/crds.yaml would refuse to).
CLUSTER_HAS_CRDS: dict[str, Any] = {"crds": {"enabled": False}}

# Value sets every rendering test runs against, by name.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "ha": {
        "operator": {"replicas": 2, "podDisruptionBudget": {"enabled": True}},
        "tokenServer": {
            "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 8},
            "podDisruptionBudget": {"maxUnavailable": "25%"},
        },
    },
    "ingress-monitoring-netpol": {
        "issuer": "https://auth.example.com",
        "tokenServer": {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "hosts": ["auth.example.com"],
                "tls": [{"hosts": ["auth.example.com"], "secretName": "auth-tls"}],
            },
            "trustedProxies": ["10.42.0.0/16", "fd00::/8"],
        },
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "podMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
            "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Auth"}},
        },
        "networkPolicy": {
            "enabled": True,
            "ingressNamespaces": ["apps", "ingress-nginx"],
            "apiServer": {"cidrs": ["10.0.0.1/32"]},
        },
    },
    "gateway-custom-issuer": {
        "issuer": "https://tokens.example.org/",
        "tokenUrl": "https://tokens.example.org/oauth2/token",
        "image": {"digest": "sha256:" + "a" * 64},
        "tokenServer": {
            "service": {"port": 8080},
            "httpRoute": {
                "enabled": True,
                "parentRefs": [{"name": "public", "namespace": "gateways"}],
                "hostnames": ["tokens.example.org"],
            },
        },
        "rbac": {"bindIssuerDiscovery": True},
        "signingKey": {"algorithm": "RS256", "keySize": 3072, "keep": False},
    },
    "assigned-audiences": {
        "audiences": {
            "ownership": "assigned",
            "assignments": [
                {"audience": "https://calendar.example.com", "namespace": "calendar"},
                {"audience": "urn:files", "namespace": "files"},
            ],
        },
    },
    "tls-cert-manager": {
        "tokenServer": {
            "tls": {
                "enabled": True,
                "certManager": {
                    "enabled": True,
                    "issuerRef": {"name": "cluster-ca", "kind": "ClusterIssuer"},
                    "dnsNames": ["tokens.internal.example"],
                },
            },
            "publishedPaths": [
                {"path": "/oauth2/token", "type": "Exact"},
                {"path": "/oauth2/introspect", "type": "Exact"},
                {"path": "/oauth2/jwks", "type": "Exact"},
            ],
            "ingress": {"enabled": True, "hosts": ["tokens.example.com"]},
        },
        "metrics": {"serviceMonitor": {"enabled": True}},
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
            ],
        },
    },
    "tls-existing-secret": {
        "tokenServer": {
            "tls": {"enabled": True, "secretName": "my-token-server-tls", "reloadInterval": 5},
            "service": {"port": 8443},
            "httpRoute": {"enabled": True, "parentRefs": [{"name": "internal"}]},
        },
    },
    "minimal": {
        "crds": {"enabled": False},
        "signingKey": {"create": False},
        "tokenServer": {
            "replicas": 1,
            "podDisruptionBudget": {"enabled": False},
            "topologySpreadConstraints": [],
        },
        "operator": {"leaderElection": {"enabled": False}},
    },
}

# Kinds whose CRDs the test control plane does not have, per value set: the server-side dry
# run skips exactly these, and the tests check they rendered.
KINDS_WITHOUT_CRDS: dict[str, set[str]] = {
    "ingress-monitoring-netpol": {"ServiceMonitor", "PodMonitor", "PrometheusRule"},
    "gateway-custom-issuer": {"HTTPRoute"},
    "tls-cert-manager": {"Certificate", "ServiceMonitor"},
    "tls-existing-secret": {"HTTPRoute"},
}


@pytest.fixture(scope="session")
def rendered(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every value set rendered once per session, by name."""
    return {
        name: render(helm, values, tmp_path_factory.mktemp(name))
        for name, values in VALUE_SETS.items()
    }
