"""The CRDs upgrade with the chart (templates/crds.yaml: crds.enabled, crds.keep), on a control
plane of its own: the session's has CRDs that no release owns. A CRD changed in a copy of the
chart reaches the cluster with `helm upgrade`, and an object using the new field keeps it;
uninstalling keeps the CRDs and every object by default, and deletes them with crds.keep false.
Then the one upgrade that needs a hand, documented in the chart README: CRDs that the chart
before the templates installed from its crds/ directory, which no release owns."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubemint.devcluster import ControlPlane, layout, resolve_binaries
from tests.chart.conftest import CHART, helm_run

pytestmark = pytest.mark.integration

RELEASE, NAMESPACE = "kubemint", "kubemint-system"
CRDS = sorted(p.name.removeprefix("kubemint.io_").removesuffix(".yaml") + ".kubemint.io"
              for p in layout.crds_dir().glob("*.yaml"))  # fmt: skip
CLIENT = {
    "apiVersion": "kubemint.io/v1alpha1",
    "kind": "OAuth2Client",
    "metadata": {"name": "task-service", "namespace": "tasks"},
    "spec": {
        "authMethod": "client_secret_basic",
        "grantTypes": ["client_credentials"],
        "scopes": ["event.view"],
        "audiences": ["https://calendar.example.com"],
    },
}
# No operator runs here (no node): nothing must give the objects its finalizer, or deleting
# the CRDs would wait for it.
NO_OPERATOR: dict[str, Any] = {"operator": {"finalizerPolicy": False}}
# What the changed CRD adds to OAuth2Client's spec (inserted as text: the chart adds its
# metadata to the file's own text, see templates/crds.yaml).
NEW_FIELD = """              properties:
                upgradeProbe:
                  type: string
                  description: A field only the upgraded CRD has.
"""


@pytest.fixture(scope="module")
def bare() -> Iterator[ControlPlane]:
    """A control plane without CRDs (no controller manager: nothing here needs one)."""
    with ControlPlane(resolve_binaries(), controller_manager=False) as plane:
        plane.kubectl("create", "namespace", "tasks")
        yield plane


def _helm(helm: Path, plane: ControlPlane, tmp: Path, *args: str, **values: Any) -> str:
    result = helm_run(
        helm, *args, "--namespace", NAMESPACE, "--kubeconfig", str(plane.kubeconfig),
        values=values or None, tmp=tmp,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args[:2])} failed: {result.stderr}")
    return result.stdout


def _established(plane: ControlPlane) -> None:
    """helm returns once the CRDs are created; the API server serves them a moment later.

    Then every kind is listed once, as the operator's and the token server's watches do in a
    real install: the API server builds a kind's storage on first use, and a CRD deleted
    before that makes its cleanup race the watch cache's start ("storage is (re)initializing",
    retried with exponential backoff: a CI run saw two CRDs still there after two minutes)."""
    plane.kubectl("wait", "--for=condition=Established", "crd", *CRDS, "--timeout=60s", timeout=70)
    deadline = time.monotonic() + 60
    for crd in CRDS:
        while (listed := plane.kubectl("get", crd, "-A", "-o", "name", check=False)).returncode:
            assert time.monotonic() < deadline, listed.stderr
            time.sleep(0.5)


def _create_client(plane: ControlPlane) -> None:
    """Right after a CRD is created the API server answers 503 "Resource kind … not found"
    for a few seconds (longer for its admission policies, e.g. the finalizer policy): retry,
    as a user or a GitOps tool would (docs/troubleshooting.md)."""
    deadline = time.monotonic() + 60
    while (
        done := plane.kubectl("apply", "-f", "-", stdin=json.dumps(CLIENT), check=False)
    ).returncode:
        assert "ServiceUnavailable" in done.stderr, done.stderr
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.5)


def _crds(plane: ControlPlane) -> dict[str, dict[str, Any]]:
    items = json.loads(plane.kubectl("get", "crd", "-o", "json").stdout)["items"]
    return {item["metadata"]["name"]: item for item in items}


def _probe(plane: ControlPlane) -> str | None:
    """Set spec.upgradeProbe on the client and read it back (None: the API server pruned it)."""
    plane.kubectl(
        "patch", "oauth2client", "task-service", "-n", "tasks", "--type=merge",
        "-p", json.dumps({"spec": {"upgradeProbe": "kept"}}),
    )  # fmt: skip
    got = plane.kubectl("get", "oauth2client", "task-service", "-n", "tasks", "-o", "json")
    return json.loads(got.stdout)["spec"].get("upgradeProbe")


def _wait_gone(plane: ControlPlane, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while _crds(plane):
        assert time.monotonic() < deadline, f"CRDs still there: {sorted(_crds(plane))}"
        time.sleep(0.5)


def test_crds_upgrade_with_the_chart_and_stay_on_uninstall(
    helm: Path, bare: ControlPlane, tmp_path: Path
) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    _helm(helm, bare, tmp_path, "install", RELEASE, str(chart), "--create-namespace", **NO_OPERATOR)
    _established(bare)
    crds = _crds(bare)
    assert sorted(crds) == CRDS
    for crd in crds.values():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    _create_client(bare)
    assert _probe(bare) is None  # the installed CRD has no such field: pruned

    crd_file = chart / "files" / "crds" / "kubemint.io_oauth2clients.yaml"
    text = crd_file.read_text()
    anchor = "              properties:\n                clientId:\n"
    assert text.count(anchor) == 1
    crd_file.write_text(text.replace(anchor, NEW_FIELD + anchor.split("\n", 1)[1]))
    _helm(helm, bare, tmp_path, "upgrade", RELEASE, str(chart), "--reuse-values")
    _established(bare)
    schema = _crds(bare)["oauth2clients.kubemint.io"]["spec"]["versions"][0]["schema"]
    assert "upgradeProbe" in schema["openAPIV3Schema"]["properties"]["spec"]["properties"]
    deadline = time.monotonic() + 30  # the API server switches to the new schema shortly after
    while _probe(bare) != "kept":
        assert time.monotonic() < deadline, "the upgraded CRD's field is still pruned"
        time.sleep(0.5)

    _helm(helm, bare, tmp_path, "uninstall", RELEASE, "--wait")
    assert sorted(_crds(bare)) == CRDS  # crds.keep (the default)
    assert _probe(bare) == "kept"  # and the objects with them

    # The same release takes its kept CRDs back; with crds.keep false they go with it.
    _helm(helm, bare, tmp_path, "install", RELEASE, str(chart), crds={"keep": False}, **NO_OPERATOR)
    _established(bare)
    _helm(helm, bare, tmp_path, "uninstall", RELEASE, "--wait")
    _wait_gone(bare)


def test_crds_from_the_former_crds_directory_are_adopted_as_the_readme_says(
    helm: Path, bare: ControlPlane, tmp_path: Path
) -> None:
    _wait_gone(bare)  # after the test above, or a fresh control plane
    old = tmp_path / "chart-crds-dir"  # the former layout: the CRDs in crds/, no template
    shutil.copytree(CHART, old)
    (old / "files" / "crds").rename(old / "crds")
    (old / "templates" / "crds.yaml").unlink()
    _helm(helm, bare, tmp_path, "install", RELEASE, str(old), "--create-namespace", **NO_OPERATOR)
    _established(bare)
    assert sorted(_crds(bare)) == CRDS
    _create_client(bare)

    refused = helm_run(
        helm, "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "--kubeconfig", str(bare.kubeconfig), tmp=tmp_path,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "belongs to no release" in refused.stderr
    assert "crds.enabled=false" in refused.stderr

    # The chart README's commands, verbatim (with this release's name and namespace).
    readme = (CHART / "README.md").read_text()
    commands = [
        line.strip()
        for line in readme.split("<!-- adopt-crds -->")[1].split("```")[1].splitlines()
        if line.strip().startswith("kubectl")
    ]
    assert len(commands) == 2, commands
    for command in commands:
        argv = command.replace("<release>", RELEASE).replace("<namespace>", NAMESPACE).split()
        subprocess.run(
            [*argv, "--kubeconfig", str(bare.kubeconfig)],
            check=True, capture_output=True, text=True, timeout=30,
            # HOME: kubectl keeps its discovery cache there (else in the working directory).
            env={"PATH": f"{bare.binaries.kubectl.parent}:/usr/bin:/bin", "HOME": str(tmp_path)},
        )  # fmt: skip

    _helm(helm, bare, tmp_path, "upgrade", RELEASE, str(CHART))
    crds = _crds(bare)
    assert all(c["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
               for c in crds.values())  # fmt: skip
    assert bare.kubectl("get", "oauth2client", "task-service", "-n", "tasks").returncode == 0
    _helm(helm, bare, tmp_path, "uninstall", RELEASE, "--wait")
    assert sorted(_crds(bare)) == CRDS
