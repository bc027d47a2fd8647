"""The node works as a cluster user sees it: a Ready node, pods with Secret volumes and projected
ServiceAccount tokens, Services by DNS name, and Secret updates reaching mounted files."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

import pytest

from kubemint.devcluster import layout
from kubemint.devcluster.binaries import KUBERNETES_MODULE, required_version
from kubemint.devcluster.node import NodeCluster
from kubemint.devcluster.node.binaries import CONTAINERD_MODULE
from kubemint.devcluster.node.kubelet import SYNC_FREQUENCY


def test_node_is_ready(node_cluster: NodeCluster) -> None:
    node = json.loads(
        node_cluster.plane.kubectl("get", "node", node_cluster.node_name, "-o", "json").stdout
    )
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == node_cluster.node_ip
    # The versions pinned by the wrapper modules (tests/node/*/go.mod) are the ones running.
    info = node["status"]["nodeInfo"]
    kube = required_version(layout.node_module_dir("kube") / "go.mod", KUBERNETES_MODULE)
    ctd = required_version(layout.node_module_dir("containerd") / "go.mod", CONTAINERD_MODULE)
    assert info["kubeletVersion"] == kube
    assert info["containerRuntimeVersion"] == f"containerd://{ctd.removeprefix('v')}"


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    claims: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def test_pod_reads_secret_volume_and_projected_token(
    node_cluster: NodeCluster, node_namespace: str
) -> None:
    secret = uuid.uuid4().hex
    audience = "kubemint-node-test"
    node_cluster.apply(f"""\
apiVersion: v1
kind: Secret
metadata: {{name: app-secret, namespace: {node_namespace}}}
stringData: {{password: "{secret}"}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: app, namespace: {node_namespace}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: reader, namespace: {node_namespace}}}
spec:
  serviceAccountName: app
  restartPolicy: Never
  securityContext: {{runAsNonRoot: true, runAsUser: 65532}}
  containers:
  - name: reader
    image: {node_cluster.images.busybox.name}
    imagePullPolicy: Never
    command: ["sh", "-c", "cat /etc/app-secret/password; echo; cat /var/run/probe/token"]
    securityContext: {{readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}}
    volumeMounts:
    - {{name: secret, mountPath: /etc/app-secret, readOnly: true}}
    - {{name: token, mountPath: /var/run/probe, readOnly: true}}
  volumes:
  - name: secret
    secret: {{secretName: app-secret}}
  - name: token
    projected:
      sources:
      - serviceAccountToken: {{audience: {audience}, expirationSeconds: 3600, path: token}}
""")
    node_cluster.wait_for_pod(node_namespace, "reader", phase="Succeeded")
    lines = node_cluster.plane.kubectl("-n", node_namespace, "logs", "reader").stdout.split()
    assert lines[0] == secret
    token = lines[1]
    claims = _claims(token)
    assert claims["aud"] == [audience]
    assert claims["iss"] == node_cluster.issuer
    assert claims["sub"] == f"system:serviceaccount:{node_namespace}:app"
    # The kubelet got it from the TokenRequest API: the API server accepts it for that audience.
    review = node_cluster.plane.kubectl(
        "create",
        "-o",
        "json",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token, "audiences": [audience]},
            }
        ),
    )
    status = json.loads(review.stdout)["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == f"system:serviceaccount:{node_namespace}:app"


def test_pod_reaches_another_through_a_service_by_dns_name(
    node_cluster: NodeCluster, node_namespace: str
) -> None:
    marker = uuid.uuid4().hex
    image = node_cluster.images.busybox.name
    serve = (
        f"mkdir -p /tmp/www && echo {marker} > /tmp/www/index.html"
        " && exec httpd -f -p 8080 -h /tmp/www"
    )
    node_cluster.apply(f"""\
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: {node_namespace}, labels: {{app: web}}}}
spec:
  containers:
  - name: web
    image: {image}
    imagePullPolicy: Never
    command: ["sh", "-c", "{serve}"]
    ports: [{{containerPort: 8080, name: http}}]
    readinessProbe:
      httpGet: {{path: /index.html, port: http}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {node_namespace}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
""")
    node_cluster.wait_for_pod(node_namespace, "web")
    fqdn = f"web.{node_namespace}.svc.{node_cluster.cluster_domain}"
    # busybox-static's wget crashes (static glibc NSS); nc resolves through the pod's
    # resolv.conf (cluster DNS, search path) like any client and speaks the HTTP by hand.
    get = r"printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc -w 5"
    fetch = " && ".join(
        [
            f"nslookup {fqdn}",
            f"{get} {fqdn} 80",
            f"{get} web 80",  # the short name, through the search path
        ]
    )
    node_cluster.apply(f"""\
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {node_namespace}}}
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: {image}
    imagePullPolicy: Never
    command: ["sh", "-c", "{fetch}"]
""")
    node_cluster.wait_for_pod(node_namespace, "client", phase="Succeeded")
    out = node_cluster.plane.kubectl("-n", node_namespace, "logs", "client").stdout
    cluster_ip = node_cluster.plane.kubectl(
        "-n", node_namespace, "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"
    ).stdout
    assert cluster_ip in out  # the DNS answer is the Service's ClusterIP
    assert out.count(marker) == 2  # by FQDN and by the short name (search path)


def test_secret_update_reaches_the_mounted_file(
    node_cluster: NodeCluster, node_namespace: str, record_property: pytest.RecordProperty
) -> None:
    node_cluster.apply(f"""\
apiVersion: v1
kind: Secret
metadata: {{name: rotating, namespace: {node_namespace}}}
stringData: {{value: "v1"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: holder, namespace: {node_namespace}}}
spec:
  containers:
  - name: holder
    image: {node_cluster.images.busybox.name}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts:
    - {{name: secret, mountPath: /etc/rotating, readOnly: true}}
  volumes:
  - name: secret
    secret: {{secretName: rotating}}
""")
    node_cluster.wait_for_pod(node_namespace, "holder")

    def mounted() -> str:
        return node_cluster.plane.kubectl(
            "-n", node_namespace, "exec", "holder", "--", "cat", "/etc/rotating/value"
        ).stdout

    assert mounted() == "v1"
    node_cluster.plane.kubectl(
        "-n", node_namespace, "patch", "secret", "rotating", "-p", '{"stringData":{"value":"v2"}}'
    )
    changed = time.monotonic()
    # The kubelet refreshes Secret volumes on the pod's periodic resync (syncFrequency, 10s
    # here): expect ~10 s, never more than a few periods. 90 s would mean the default 1m.
    deadline = changed + 90
    while mounted() != "v2":
        assert time.monotonic() < deadline, "the Secret update did not reach the file in 90 s"
        time.sleep(0.25)
    delay = time.monotonic() - changed
    record_property("secret_propagation_seconds", round(delay, 1))
    print(f"Secret update visible in the pod after {delay:.1f}s (syncFrequency {SYNC_FREQUENCY})")


# Where containerd, runc, the kubelet, CNI and NRI write by default (some ignore their
# configuration): inside the sandbox these are private tmpfs or configured away.
HOST_DEFAULT_PATHS = (
    "/etc/cni",
    "/etc/containerd",
    "/etc/kubernetes",
    "/etc/nri",
    "/opt/cni",
    "/opt/containerd",
    "/run/containerd",
    "/run/netns",
    "/run/nri",
    "/run/runc",
    "/var/lib/cni",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
)


def test_the_node_writes_nothing_on_the_host_outside_its_state_dir(
    node_cluster: NodeCluster,
) -> None:
    # Inside, the same kind of paths exist: the check looks where the node really writes.
    inside = node_cluster.run_in_sandbox(
        ["ls", "-d", "/run/containerd", "/var/lib/kubelet", "/var/lib/containerd/opt"]
    )
    assert inside.returncode == 0, inside.stderr
    assert [p for p in HOST_DEFAULT_PATHS if Path(p).exists()] == []
