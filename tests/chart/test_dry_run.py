"""Every value set's manifests (CRDs included) pass the real API server's validation and
admission with `kubectl apply --dry-run=server`, in a fresh namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kubemint.devcluster import ControlPlane
from tests.chart.conftest import CHART, KINDS_WITHOUT_CRDS, RELEASE, VALUE_SETS, helm_run

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_manifests_pass_a_server_side_dry_run(
    helm: Path, cluster: ControlPlane, namespace: str, tmp_path: Path, name: str
) -> None:
    result = helm_run(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--include-crds",
        values=VALUE_SETS[name],
        tmp=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # Filter helm's own text rather than re-serialising it: PyYAML writes keys such as `y`
    # bare, which the API server's YAML 1.1 parser reads as booleans.
    texts = [text for text in re.split(r"^---\s*$", result.stdout, flags=re.MULTILINE)]
    kinds = [(yaml.safe_load(text) or {}).get("kind") for text in texts]
    skipped = KINDS_WITHOUT_CRDS.get(name, set())
    assert skipped <= set(kinds)  # skip only what is really there
    applied = [
        text for text, kind in zip(texts, kinds, strict=True) if kind and kind not in skipped
    ]
    crds_enabled = VALUE_SETS[name].get("crds", {}).get("enabled", True)
    assert ("CustomResourceDefinition" in kinds) == crds_enabled
    dry_run = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "--namespace",
        namespace,
        "-f",
        "-",
        stdin="\n---\n".join(applied),
        check=False,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    lines = [line for line in dry_run.stdout.splitlines() if line.strip()]
    assert len(lines) == len(applied), dry_run.stdout
    assert all("(server dry run)" in line for line in lines), dry_run.stdout
