"""The `kubemint` command: operator, token server, workload helpers (token, verify), and a
local development cluster."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from kubemint import __version__

if TYPE_CHECKING:  # imported lazily at run time: `kubemint operator` need not load it
    from kubemint.devcluster import ControlPlane


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    code: int = args.run(args)
    return code


def build_parser() -> argparse.ArgumentParser:
    """The `kubemint` command line (also read by the tests that check the image and the chart)."""
    parser = argparse.ArgumentParser(prog="kubemint", description=__doc__)
    parser.add_argument("--version", action="version", version=f"kubemint {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    operator = commands.add_parser(
        "operator", help="reconcile kubemint custom resources into Secrets and status"
    )
    operator.set_defaults(run=_operator)

    server = commands.add_parser("token-server", help="serve the OAuth2 token endpoint and JWKS")
    server.set_defaults(run=_token_server)

    token = commands.add_parser(
        "token",
        help="print an access token using mounted credentials (or keep a token file fresh)",
        description=(
            "Obtain a client_credentials token with a mounted OAuth2Client Secret "
            "(--credentials DIR holding client-id, client-secret, token-url, auth-method; "
            "client_secret_jwt assertions are signed with the secret, private_key_jwt ones "
            "with --private-key or DIR/private-key) or a projected "
            "ServiceAccount token (--projected-token PATH with --client-id and --token-url). "
            "Prints the token; with --watch --out FILE, rewrites FILE atomically before "
            "each expiry until interrupted, retrying failures with backoff and jitter while "
            "FILE keeps its last good token (one line on stderr says what fails). Give --out "
            "several times, as path=FILE,audience=AUD,scope='S1 S2', to keep one file per "
            "audience/scope fresh from the same credentials."
        ),
    )
    token.add_argument("--credentials", type=Path, help="directory of the mounted client Secret")
    token.add_argument("--projected-token", type=Path, help="a projected ServiceAccount token")
    token.add_argument(
        "--private-key",
        type=Path,
        help="the client's private key (PEM or JWK) for private_key_jwt clients",
    )
    token.add_argument("--client-id", help="client id (with --projected-token)")
    token.add_argument("--token-url", help="token endpoint URL (with --projected-token)")
    token.add_argument("--scope", help="space-separated scopes to request")
    token.add_argument("--audience", help="audience to request")
    token.add_argument("--watch", action="store_true", help="keep --out fresh until stopped")
    token.add_argument(
        "--out",
        action="append",
        default=[],
        metavar="FILE | path=FILE[,audience=AUD][,scope=SCOPES]",
        help="token file to write (with --watch); repeat for several audiences/scopes",
    )
    token.add_argument(
        "--renew-before",
        type=float,
        metavar="SECONDS",
        help="renew when this much of a token's life is left (default: 20%%, at least 10 s)",
    )
    token.add_argument(
        "--retry-max",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="longest wait between retries of a failed renewal (default: 5)",
    )
    token.set_defaults(run=_token)

    verify = commands.add_parser(
        "verify",
        help="verify an access token against the issuer's JWKS and print its claims",
        description=(
            "Check a kubemint access token the way a resource server does (kubemint.verify): "
            "signature against the issuer's JWKS with a pinned algorithm, typ at+jwt, issuer, "
            "audience, expiry and, with --scope, the scopes a call needs. Prints the claims as "
            "JSON and exits 0, or prints why not and exits 1."
        ),
    )
    verify.add_argument(
        "token",
        nargs="?",
        help="the token, or a token response (JSON); default: read standard input",
    )
    verify.add_argument("--issuer", required=True, help="the kubemint issuer URL")
    verify.add_argument("--audience", required=True, help="the audience you answer to")
    verify.add_argument("--scope", default="", help="space-separated scopes the call needs")
    verify.set_defaults(run=_verify)

    assign = commands.add_parser(
        "assign-audience",
        help="print the record that assigns an audience to a namespace (for kubectl apply)",
        description=(
            "Print, as JSON for `kubectl apply -f -`, the ownership record (a ConfigMap in the "
            "token server's namespace) that assigns AUDIENCE to NAMESPACE: the namespace's "
            "AccessRules for it are then the only ones that grant, in either ownership mode. "
            "Delete the ConfigMap to withdraw the assignment."
        ),
    )
    assign.add_argument("audience", help="the audience, e.g. https://calendar.example.com")
    assign.add_argument("owner", metavar="NAMESPACE", help="the namespace that owns it")
    assign.add_argument(
        "-n",
        "--namespace",
        default="kubemint-system",
        help="the token server's namespace (default: kubemint-system)",
    )
    assign.set_defaults(run=_assign_audience)

    withdraw = commands.add_parser(
        "withdraw-key",
        help="print the patch that withdraws signing keys after a suspected compromise",
        description=(
            "Read a SigningKey as JSON on stdin (kubectl get signingkey NAME -o json) and print "
            "the merge patch that adds KIDs (--active: the active key and the staged next key, "
            "which sat in the same Secret; --retired: every retired key) to its "
            "kubemint.io/withdraw annotation, keeping the kids it already names. Apply it "
            'with kubectl patch signingkey NAME --type merge -p "$(...)". '
            "See docs/key-compromise.md."
        ),
    )
    withdraw.add_argument("kids", metavar="KID", nargs="*", help="key ids to withdraw")
    withdraw.add_argument("--active", action="store_true", help="withdraw the active and next keys")
    withdraw.add_argument("--retired", action="store_true", help="withdraw every retired key")
    withdraw.set_defaults(run=_withdraw_key)

    dev = commands.add_parser("dev", help="local development helpers")
    dev_commands = dev.add_subparsers(title="dev commands", metavar="COMMAND", required=True)
    up = dev_commands.add_parser(
        "up",
        help="start a local control plane with the kubemint CRDs and run until interrupted",
        description=(
            "Start etcd, kube-apiserver and kube-controller-manager on 127.0.0.1, install the "
            "kubemint CRDs, create the kubemint-system namespace with a default SigningKey, "
            "run the kubemint operator and token server, print KUBECONFIG=<path>, "
            "ISSUER=<url> and TOKEN_URL=<url> on their own lines once tokens can be issued, "
            "and run until interrupted (Ctrl-C or SIGTERM); then stop everything it started. "
            "With --node: a real single-node cluster instead (containerd, kubelet, kube-proxy, "
            "kube-scheduler, CNI, CoreDNS and the control plane inside namespaces of their own; "
            "run as root), with the CRDs installed; it prints KUBECONFIG=<path>, NODE=<name>, "
            "STATE_DIR=<dir> and how to import an OCI image archive into the node."
        ),
    )
    up.add_argument(
        "--node",
        action="store_true",
        help="a real node that runs pods (kubemint.devcluster.node) instead of host processes",
    )
    up.add_argument(
        "--crds", type=Path, default=None, help="CRD directory (default: the checkout's crds/)"
    )
    up.add_argument(
        "--no-controller-manager",
        action="store_true",
        help="skip kube-controller-manager (no garbage collection or namespace deletion)",
    )
    up.add_argument(
        "--port",
        type=int,
        default=0,
        help="token server port on 127.0.0.1 (default: a free port)",
    )
    up.set_defaults(run=_dev_up)

    from kubemint.admin.commands import register as admin_commands

    admin_commands(commands)  # can-i, inspect, status (kubemint.admin)
    return parser


def _token(args: argparse.Namespace) -> int:
    from kubemint.client.command import run

    return run(args)


def _verify(args: argparse.Namespace) -> int:
    import json

    import httpx

    from kubemint.verify import InvalidToken, VerificationUnavailable, Verifier

    token = (args.token or sys.stdin.read()).strip()
    if token.startswith("{"):  # a whole token response piped from curl
        try:
            token = str(json.loads(token)["access_token"])
        except (ValueError, KeyError, TypeError):
            print("kubemint verify: the input is JSON without an access_token", file=sys.stderr)
            return 1
    try:
        claims = Verifier(issuer=args.issuer, audience=args.audience).verify(
            token, args.scope.split()
        )
    except InvalidToken as exc:
        missing = f" (missing: {' '.join(exc.scopes)})" if exc.scopes else ""
        print(f"kubemint verify: {exc.message}{missing}", file=sys.stderr)
        return 1
    except (VerificationUnavailable, httpx.HTTPError) as exc:
        print(f"kubemint verify: cannot read the issuer's JWKS: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(claims, sort_keys=True))
    return 0


def _assign_audience(args: argparse.Namespace) -> int:
    import json

    from kubemint.api.audiences import SOURCE_ASSIGNED, InvalidRecord, OwnerRecord, decode, encode

    body = encode(OwnerRecord(args.audience, args.owner, SOURCE_ASSIGNED), args.namespace)
    if isinstance(found := decode(body, args.audience), InvalidRecord):
        print(f"kubemint assign-audience: {found.problem}", file=sys.stderr)
        return 2
    body["metadata"]["labels"].pop("app.kubernetes.io/managed-by")  # an admin's, not kubemint's
    print(json.dumps(body, indent=2))
    return 0


def _withdraw_key(args: argparse.Namespace) -> int:
    import json

    from kubemint.api.signingkey import withdrawal_patch

    try:
        body = json.loads(sys.stdin.read())
        if not isinstance(body, dict) or body.get("kind") != "SigningKey":
            raise ValueError("stdin must be a SigningKey as JSON (kubectl get ... -o json)")
        patch = withdrawal_patch(body, tuple(args.kids), active=args.active, retired=args.retired)
    except ValueError as exc:
        print(f"kubemint withdraw-key: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(patch))
    return 0


def _operator(_: argparse.Namespace) -> int:
    from kubemint.controller.main import main as run

    return run()


def _token_server(_: argparse.Namespace) -> int:
    from kubemint.server.main import main as run

    return run()


def _dev_up(args: argparse.Namespace) -> int:
    if args.node:
        return _dev_up_node(args)
    from kubemint.devcluster import ControlPlane, ControlPlaneError, layout, resolve_binaries
    from kubemint.devcluster.binaries import BinariesError
    from kubemint.devcluster.components import (
        metrics_url,
        operator_process,
        token_server_process,
        wait_for_http,
        wait_for_leader,
    )
    from kubemint.devcluster.controlplane import free_port

    _interrupt_on(signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    try:
        binaries = resolve_binaries()
        crds = args.crds or layout.crds_dir()
        with ControlPlane(
            binaries, crd_paths=[crds], controller_manager=not args.no_controller_manager
        ) as plane:
            # What the Helm chart sets up: the server namespace with a default SigningKey.
            plane.kubectl("create", "namespace", DEV_NAMESPACE)
            plane.kubectl("apply", "-f", "-", stdin=DEV_SIGNING_KEY)
            port = args.port or free_port()
            issuer = f"http://127.0.0.1:{port}"
            operator = operator_process(
                plane, namespace=DEV_NAMESPACE, issuer=issuer, recheck_interval=5
            )
            server = token_server_process(plane, namespace=DEV_NAMESPACE, issuer=issuer, port=port)
            operator.start()
            server.start()
            try:
                wait_for_leader(plane, DEV_NAMESPACE, "kubemint-operator", "operator")
                _wait_for_signing_key(plane)
                wait_for_http(issuer + "/readyz", server)
                _wait_for_jwks(issuer)
                timings = ", ".join(f"{k} {v:.1f}s" for k, v in plane.timings.items())
                print(
                    f"kubemint: control plane and operator ready ({timings}); logs in "
                    f"{plane.workdir}",
                    file=sys.stderr,
                )
                print(f"KUBECONFIG={plane.kubeconfig}", flush=True)
                print(f"ISSUER={issuer}", flush=True)
                print(f"TOKEN_URL={issuer}/oauth2/token", flush=True)
                print(f"METRICS_URL={metrics_url(server)}", flush=True)
                while True:
                    time.sleep(1)
                    dead = [p for p in [*plane.processes, operator, server] if not p.alive()]
                    if dead:
                        print(
                            f"kubemint: {dead[0].name} exited:\n{dead[0].log_tail()}",
                            file=sys.stderr,
                        )
                        return 1
            finally:
                server.stop()
                operator.stop()
    except KeyboardInterrupt:
        print("kubemint: stopped", file=sys.stderr)
        return 0
    except (BinariesError, ControlPlaneError) as exc:
        print(f"kubemint: {exc}", file=sys.stderr)
        return 1


def _dev_up_node(args: argparse.Namespace) -> int:
    from kubemint.devcluster import ControlPlaneError, layout
    from kubemint.devcluster.binaries import BinariesError
    from kubemint.devcluster.node import NodeCluster
    from kubemint.devcluster.node.packages import PackagesError
    from kubemint.devcluster.node.sandbox import SandboxError

    _interrupt_on(signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    try:
        with NodeCluster(crd_paths=[args.crds or layout.crds_dir()]) as node:
            timings = ", ".join(f"{k} {v:.1f}s" for k, v in node.timings.items())
            print(f"kubemint: node {node.node_name} Ready ({timings})", file=sys.stderr)
            ctr = f"{node.binaries.ctr} -n k8s.io images import - < IMAGE.oci.tar"
            print(
                f"kubemint: kubectl --kubeconfig={node.kubeconfig} get pods -A\n"
                f"kubemint: import an OCI archive (pods use it with imagePullPolicy: Never):\n"
                f"  nsenter --target={node.sandbox_pid} --mount --net --pid -- {ctr}\n"
                f"kubemint: logs in {node.state_dir}; Ctrl-C stops and removes everything",
                file=sys.stderr,
            )
            print(f"KUBECONFIG={node.kubeconfig}", flush=True)
            print(f"NODE={node.node_name}", flush=True)
            print(f"STATE_DIR={node.state_dir}", flush=True)
            while True:
                time.sleep(1)
                dead = [p for p in node.processes if not p.alive()]
                if dead:
                    print(
                        f"kubemint: {dead[0].name} exited:\n{dead[0].log_tail()}",
                        file=sys.stderr,
                    )
                    return 1
    except KeyboardInterrupt:
        print("kubemint: stopped", file=sys.stderr)
        return 0
    except (BinariesError, ControlPlaneError, PackagesError, SandboxError) as exc:
        print(f"kubemint: {exc}", file=sys.stderr)
        return 1


def _wait_for_signing_key(plane: ControlPlane, timeout: float = 60) -> None:
    """Tokens can be issued once the default SigningKey has an active key."""
    from kubemint.devcluster import ControlPlaneError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kid = plane.kubectl(
            "get",
            "signingkey",
            "default",
            "-n",
            DEV_NAMESPACE,
            "-o",
            "jsonpath={.status.active.kid}",
            check=False,
        ).stdout
        if kid:
            return
        time.sleep(0.2)
    raise ControlPlaneError("the default SigningKey got no active key")


def _wait_for_jwks(issuer: str, timeout: float = 30) -> None:
    """…and once the token server's view holds it (its JWKS is not empty)."""
    import json
    import urllib.request

    from kubemint.devcluster import ControlPlaneError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(issuer + "/oauth2/jwks", timeout=2) as response:  # noqa: S310
            if json.load(response)["keys"]:
                return
        time.sleep(0.2)
    raise ControlPlaneError("the token server has no signing key yet")


DEV_NAMESPACE = "kubemint-system"
DEV_SIGNING_KEY = f"""\
apiVersion: kubemint.io/v1alpha1
kind: SigningKey
metadata:
  name: default
  namespace: {DEV_NAMESPACE}
spec:
  algorithm: ES256
"""


def _interrupt_on(*signals: signal.Signals) -> None:
    """Turn the first of these signals into KeyboardInterrupt, so `with` blocks clean up.

    Later signals are ignored: a second Ctrl-C must not cut the cleanup short.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    for sig in signals:
        signal.signal(sig, handler)
