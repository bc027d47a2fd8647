"""Every container runs non-root on a read-only root filesystem, without privilege escalation or
capabilities, under the runtime's seccomp profile, and with resource requests and limits."""

from __future__ import annotations

import pytest

from tests.chart.conftest import VALUE_SETS, documents

CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_container_has_the_security_defaults_and_resources(
    rendered: dict[str, str], name: str
) -> None:
    deployments = [d for d in documents(rendered[name]) if d["kind"] == "Deployment"]
    assert len(deployments) == 2
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod.get("hostNetwork") is not True
        containers = pod["containers"] + pod.get("initContainers", [])
        for container in containers:
            context = container["securityContext"]
            for key, want in CONTAINER_SECURITY.items():
                assert context.get(key) == want, (container["name"], key)
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
            assert "memory" in resources["limits"], container["name"]
            # The read-only root filesystem still leaves the process a writable /tmp.
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
