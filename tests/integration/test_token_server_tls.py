"""The real token server over HTTPS, on the real control plane.

Its certificate comes from files laid out as the kubelet mounts a Secret (secret_volume.py)
and is rotated the way the kubelet updates one: clients that keep asking for tokens across
the rotation see no failure, connections already open stay open with the old certificate,
new handshakes get the new one, and a bad rotation (garbage, a key of another certificate)
is logged while the last good certificate keeps serving. /metrics is on its own port only,
and the issuer the server and the operator hand out is https.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography import x509

from kubemint.devcluster import ControlPlane
from kubemint.devcluster.components import token_server_process
from kubemint.devcluster.pki import CertificateAuthority, CertPair
from tests.integration.conftest import RunningOperator, RunningServer, own_operator
from tests.integration.kube_helpers import apply, custom, secret_data, wait_for, wait_ready
from tests.integration.secret_volume import SecretVolume

AUDIENCE = "https://tls-calendar.test"


@pytest.fixture(scope="module")
def operator(
    cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    """As conftest's, with the https issuer this module's token server listens on."""
    with own_operator(cluster, tmp_path_factory, scheme="https") as running:
        yield running


@dataclass
class TlsServer:
    server: RunningServer
    authority: CertificateAuthority
    volume: SecretVolume
    port: int
    trust: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        self.trust = ssl.create_default_context(cafile=self.authority.pair.cert)

    def certificate(self, stem: str) -> CertPair:
        return self.authority.issue_serving(stem, ("localhost",), ("127.0.0.1",), stem)

    def install(self, pair: CertPair) -> None:
        """What the kubelet does when the Secret changes: one atomic swap of both files."""
        self.volume.write({"tls.crt": pair.cert.read_text(), "tls.key": pair.key.read_text()})

    def served(self) -> x509.Certificate:
        """The certificate a new handshake gets (verified against the test CA)."""
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw,
            self.trust.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)


def _wait_ready(url: str, trust: ssl.SSLContext, process: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.alive(), process.log_tail()
        try:
            if httpx.get(url, verify=trust, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not become ready:\n{process.log_tail()}")


@pytest.fixture(scope="module")
def tls(operator: RunningOperator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    root = tmp_path_factory.mktemp("tls")
    authority = CertificateAuthority(root)
    volume = SecretVolume(root / "volume")
    port = int(operator.issuer.rsplit(":", 1)[1])
    process = token_server_process(
        operator.cluster,
        namespace=operator.namespace,
        issuer=operator.issuer,
        port=port,
        log_dir=root,
        extra_env={
            "KUBEMINT_TLS_CERT_FILE": str(volume.root / "tls.crt"),
            "KUBEMINT_TLS_KEY_FILE": str(volume.root / "tls.key"),
            "KUBEMINT_TLS_RELOAD_INTERVAL": "0.2",
            "KUBEMINT_AUTH_FAILURES_PER_SOURCE": "100000",
        },
    )
    served = TlsServer(RunningServer(operator.issuer, process), authority, volume, port)
    served.install(served.certificate("first"))
    process.start()
    try:
        _wait_ready(operator.issuer + "/readyz", served.trust, process)
        yield served
    finally:
        process.stop()


@pytest.fixture(scope="module")
def credentials(operator: RunningOperator) -> dict[str, str]:
    namespace = f"tls-{uuid.uuid4().hex[:6]}"
    operator.cluster.kubectl("create", "namespace", namespace)
    apply(
        operator.cluster,
        custom("OAuth2Client", "tasks", namespace, audiences=[AUDIENCE], scopes=["read"]),
        custom(
            "AccessRule",
            "tasks",
            namespace,
            audience=AUDIENCE,
            scopes=["read"],
            subjects=[{"kind": "OAuth2Client", "name": "tasks"}],
        ),
    )
    wait_ready(operator.cluster, "OAuth2Client", namespace, "tasks")
    data = secret_data(operator.cluster, namespace, "tasks-credentials")
    assert data is not None
    return data


class TokenLoop(threading.Thread):
    """Asks for tokens until stopped; `fresh` opens a connection (a handshake) per request."""

    def __init__(self, tls: TlsServer, credentials: dict[str, str], *, fresh: bool) -> None:
        super().__init__(daemon=True)
        self.tls, self.credentials, self.fresh = tls, credentials, fresh
        self.halt = threading.Event()
        self.ok = 0
        self.failures: list[str] = []

    def run(self) -> None:
        auth = (self.credentials["client-id"], self.credentials["client-secret"])
        headers = {"Connection": "close"} if self.fresh else {}
        with httpx.Client(verify=self.tls.trust, timeout=10) as client:
            while not self.halt.is_set():
                try:
                    response = client.post(
                        self.tls.server.token_url,
                        data={"grant_type": "client_credentials"},
                        auth=auth,
                        headers=headers,
                    )
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


def _first_token(tls: TlsServer, credentials: dict[str, str]) -> None:
    def issued() -> bool:
        response = httpx.post(
            tls.server.token_url,
            data={"grant_type": "client_credentials"},
            auth=(credentials["client-id"], credentials["client-secret"]),
            verify=tls.trust,
        )
        return response.status_code == 200

    wait_for(issued, "a first token over HTTPS")


def _served_serial_becomes(tls: TlsServer, serial: int, what: str) -> None:
    wait_for(lambda: tls.served().serial_number == serial, what, timeout=30)


def _kept_alive(tls: TlsServer) -> http.client.HTTPSConnection:
    connection = http.client.HTTPSConnection("127.0.0.1", tls.port, context=tls.trust, timeout=10)
    connection.request("GET", "/oauth2/jwks")
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    return connection


def _serial_of(connection: http.client.HTTPSConnection) -> int:
    assert isinstance(connection.sock, ssl.SSLSocket)
    der = connection.sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _during(loops: list[TokenLoop], action: Callable[[], None], after: int = 20) -> None:
    for loop in loops:
        loop.start()
    try:
        action()
        floor = [loop.ok for loop in loops]  # each loop gets `after` more tokens afterwards
        wait_for(
            lambda: all(loop.ok >= f + after for loop, f in zip(loops, floor, strict=True)),
            "tokens after the rotation",
            timeout=60,
        )
    finally:
        for loop in loops:
            loop.stop()


def test_a_rotated_certificate_is_served_without_a_failed_request_or_a_dropped_connection(
    tls: TlsServer, credentials: dict[str, str]
) -> None:
    _first_token(tls, credentials)
    old = tls.served()
    connection = _kept_alive(tls)
    opened = connection.sock
    new = tls.certificate(f"rotated-{uuid.uuid4().hex[:6]}")
    new_serial = x509.load_pem_x509_certificate(new.cert.read_bytes()).serial_number
    loops = [TokenLoop(tls, credentials, fresh=True), TokenLoop(tls, credentials, fresh=False)]

    def rotate() -> None:
        time.sleep(0.5)  # some tokens with the old certificate first
        tls.install(new)
        _served_serial_becomes(tls, new_serial, "the rotated certificate on new handshakes")

    _during(loops, rotate)
    for loop in loops:
        assert loop.failures == [], loop.failures[:5]
        assert loop.ok >= 20
    # The connection opened before the rotation is still open, still with the old certificate.
    connection.request("GET", "/oauth2/jwks")
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    assert connection.sock is opened
    assert _serial_of(connection) == old.serial_number != new_serial
    connection.close()
    assert "TLS certificate rotated" in tls.server.log()


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ("garbage", "holds no PEM certificate"),
        ("foreign-key", "does not belong to the certificate"),
        ("missing-key", "cannot read"),
    ],
)
def test_a_bad_rotation_is_logged_and_the_last_good_certificate_keeps_serving(
    tls: TlsServer, credentials: dict[str, str], broken: str, reason: str
) -> None:
    _first_token(tls, credentials)
    serving = tls.served().serial_number
    good = tls.certificate(f"good-{uuid.uuid4().hex[:6]}")
    other = tls.certificate(f"other-{uuid.uuid4().hex[:6]}")
    loop = TokenLoop(tls, credentials, fresh=True)

    def break_it() -> None:
        if broken == "garbage":
            tls.volume.write({"tls.crt": "not a certificate\n", "tls.key": good.key.read_text()})
        elif broken == "foreign-key":
            tls.volume.write({"tls.crt": good.cert.read_text(), "tls.key": other.key.read_text()})
        else:
            (tls.volume.root / "tls.key").unlink()
        wait_for(lambda: reason in tls.server.log(), f"the log to say {reason!r}", timeout=30)

    _during([loop], break_it)
    assert loop.failures == [], loop.failures[:5]
    assert tls.server.process.alive()
    assert tls.served().serial_number == serving  # the last good one, still
    assert "still serving" in tls.server.log()
    tls.install(good)  # and the next good rotation is taken
    _served_serial_becomes(
        tls,
        x509.load_pem_x509_certificate(good.cert.read_bytes()).serial_number,
        "the good certificate after the bad one",
    )


def test_metrics_are_served_on_their_own_port_only(
    tls: TlsServer, credentials: dict[str, str]
) -> None:
    _first_token(tls, credentials)
    main = httpx.get(tls.server.issuer + "/metrics", verify=tls.trust)
    assert main.status_code == 404
    assert "kubemint_" not in main.text
    scraped = httpx.get(tls.server.metrics_url)
    assert scraped.status_code == 200
    assert 'kubemint_tokens_total{grant_type="client_credentials",outcome="issued"}' in scraped.text
    expiry = next(
        line
        for line in scraped.text.splitlines()
        if line.startswith("kubemint_tls_certificate_expiry_timestamp_seconds ")
    )
    assert float(expiry.split()[1]) == tls.served().not_valid_after_utc.timestamp()
    # The metrics listener speaks plain HTTP and nothing else: no OAuth endpoint there.
    assert httpx.get(tls.server.metrics_url.replace("/metrics", "/oauth2/jwks")).status_code == 404


def test_discovery_and_the_operator_s_secrets_name_the_https_issuer(
    tls: TlsServer, operator: RunningOperator, credentials: dict[str, str]
) -> None:
    assert tls.server.issuer.startswith("https://")
    metadata = httpx.get(
        tls.server.issuer + "/.well-known/oauth-authorization-server", verify=tls.trust
    ).json()
    assert metadata["issuer"] == tls.server.issuer
    for key in ("token_endpoint", "jwks_uri", "revocation_endpoint", "introspection_endpoint"):
        assert metadata[key].startswith(tls.server.issuer + "/"), (key, metadata[key])
    assert credentials["issuer"] == tls.server.issuer
    assert credentials["token-url"] == tls.server.issuer + "/oauth2/token"
    # Plain HTTP on the HTTPS port gets no token (and no secret crosses in clear).
    with pytest.raises(httpx.HTTPError):
        httpx.post(
            tls.server.token_url.replace("https://", "http://"),
            data={"grant_type": "client_credentials"},
            auth=(credentials["client-id"], credentials["client-secret"]),
        ).raise_for_status()
