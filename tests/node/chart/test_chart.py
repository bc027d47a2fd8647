"""charts/kubemint installed by helm on a real node: pods Ready, hardened as the chart says,
reachable through the Service by DNS name, and the README quick start run from inside a pod."""

from __future__ import annotations

import json
import time

from kubemint.devcluster.layout import repo_root
from tests.node.chart import pods
from tests.node.chart.conftest import Installed


def _ready(pod: dict[str, object]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])  # type: ignore[attr-defined]
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_the_operator_and_token_server_pods_run_ready_and_hardened(installed: Installed) -> None:
    release, plane = installed.release, installed.plane
    servers = release.pods("token-server")
    operators = release.pods("operator")
    assert [_ready(p) for p in servers] == [True, True], release.describe()
    assert [_ready(p) for p in operators] == [True, True], release.describe()
    for pod in servers + operators:
        name = pod["metadata"]["name"]
        restarts = [c["restartCount"] for c in pod["status"]["containerStatuses"]]
        assert restarts == [0], (name, restarts)  # probes and the image's user hold from the start
        probe = pods.exec_in(
            plane,
            release.namespace,
            name,
            "python",
            "-c",
            "import os, pathlib\n"
            "print(os.getuid(), os.getgid())\n"
            "pathlib.Path('/tmp/probe').write_text('x')\n"  # the emptyDir is writable
            "try:\n    pathlib.Path('/opt/kubemint/probe').write_text('x')\n"
            "except OSError as e:\n    print(e.strerror)\n"
            "else:\n    print('root filesystem writable')",
        ).splitlines()
        assert probe == ["65532 65532", "Read-only file system"], (name, probe)
    # The token server's probes are what made it Ready: /readyz answers 200 once the view has
    # synced; from a workload pod, by the Service's DNS name.
    ready = installed.toolbox(
        "python", "-c", f"import httpx; print(httpx.get('{release.service}/readyz').text)"
    )
    assert json.loads(ready)["status"] == "ready"
    budget = json.loads(
        plane.kubectl(
            "get", "pdb", "-n", release.namespace, f"{release.fullname}-token-server", "-o", "json"
        ).stdout
    )
    assert budget["status"]["disruptionsAllowed"] == 1
    assert budget["status"]["currentHealthy"] == 2


def test_the_readme_quick_start_works_from_inside_a_pod(installed: Installed) -> None:
    """README "Quick start": apply examples/quickstart/, get a token with the mounted Secret
    from the in-cluster token server, verify it like a resource server; in a pod."""
    plane = installed.plane
    plane.kubectl("apply", "-f", str(repo_root() / "examples" / "quickstart"))
    plane.kubectl(
        "wait", "--for=condition=Ready", "-n", "tasks", "oauth2client/task-service", "--timeout=60s"
    )
    script = (
        "set -e; creds=/var/run/secrets/kubemint; "
        "for i in 1 2 3 4 5; do "
        "kubemint token --credentials $creds --scope event.view > /tmp/token && break; sleep 1; "
        "done; "
        'kubemint verify --issuer "$(cat $creds/issuer)" '
        "--audience https://calendar.example.com < /tmp/token"
    )
    shell = pods.container("quickstart", ["/bin/sh", "-c", script])
    shell["volumeMounts"].append(
        {"name": "kubemint", "mountPath": "/var/run/secrets/kubemint", "readOnly": True}
    )
    manifest = pods.pod(
        "quickstart",
        "tasks",
        [shell],
        [{"name": "kubemint", "secret": {"secretName": "task-service-credentials"}}],
    )
    manifest["spec"]["restartPolicy"] = "Never"
    try:
        pods.apply(plane, manifest)
        installed.node.wait_for_pod("tasks", "quickstart", phase="Succeeded", timeout=120)
        out = plane.kubectl("logs", "-n", "tasks", "quickstart").stdout
        claims = json.loads(out.strip().splitlines()[-1])
        assert claims["client_id"] == "tasks.task-service"
        assert claims["scope"] == "event.view"
        assert claims["aud"] == "https://calendar.example.com"
        assert claims["iss"] == installed.release.issuer
    finally:
        plane.kubectl("delete", "pod", "-n", "tasks", "quickstart", "--wait=false", check=False)
        # The calendar scenario (test_calendar.py) applies its own task-service client and
        # rules in the same namespaces: leave them (and the shared SigningKey) to it.
        quickstart = repo_root() / "examples" / "quickstart"
        for step in ("20-task-service-client.yaml", "30-calendar-access-rule.yaml"):
            plane.kubectl("delete", "-f", str(quickstart / step), "--wait=false", check=False)


def test_every_call_the_release_makes_is_allowed_by_the_chart_s_rbac(installed: Installed) -> None:
    """The API server's audit log (Metadata level) for the release's two ServiceAccounts: they
    made calls (so the log is the right one), and RBAC refused not one. Runs last (conftest),
    after the other tests made the components do everything they do."""
    namespace = installed.release.namespace
    accounts = {
        f"system:serviceaccount:{namespace}:{installed.release.fullname}-{component}": component
        for component in ("operator", "token-server")
    }
    time.sleep(2)  # the audit backend writes in batches
    calls = dict.fromkeys(accounts.values(), 0)
    forbidden: list[str] = []
    for line in installed.node.audit_log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        component = accounts.get(event.get("user", {}).get("username", ""))
        if component is None or event.get("stage") != "ResponseComplete":
            continue
        # The authorizer's decision (RBAC's): admission may refuse too, e.g. an Event into a
        # namespace being deleted at a test's end, a 403 that RBAC allowed.
        decision = (event.get("annotations") or {}).get("authorization.k8s.io/decision")
        if decision is None:
            continue
        calls[component] += 1
        if decision != "allow":
            forbidden.append(f"{component}: {event['verb']} {event['requestURI']}")
    assert all(count > 20 for count in calls.values()), calls
    assert not forbidden, "\n".join(sorted(set(forbidden)))
