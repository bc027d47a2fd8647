"""`kubemint token --watch --out` as a sidecar sees it: a Secret volume the kubelet updates by
swapping `..data`, a client secret that rotates, and a token server that is away for a while.

The volume is updated exactly as the kubelet's AtomicWriter does (tests/integration/
secret_volume.py), some seconds after the operator rotated the secret, as the kubelet would.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from kubemint.verify import Verifier
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import apply, custom, secret_data, wait_for, wait_ready
from tests.integration.secret_volume import SecretVolume

PROPAGATION = 3.0  # seconds between the Secret's update and the volume's (the kubelet's delay)


def _client(
    operator: RunningOperator, namespace: str, lifetime: str = "10m", **secret: str
) -> tuple[str, str]:
    audience = f"https://{namespace}.watch.test"
    apply(
        operator.cluster,
        custom(
            "OAuth2Client",
            "sidecar",
            namespace,
            audiences=[audience],
            scopes=["read"],
            tokenLifetime=lifetime,
            **({"secret": secret} if secret else {}),
        ),
        custom(
            "AccessRule",
            "sidecar",
            namespace,
            audience=audience,
            scopes=["read"],
            subjects=[{"kind": "OAuth2Client", "name": "sidecar"}],
        ),
    )
    wait_ready(operator.cluster, "OAuth2Client", namespace, "sidecar")
    return audience, "sidecar-credentials"


def _request(token_url: str, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        token_url, data={"grant_type": "client_credentials"}, auth=(client_id, secret), timeout=5
    )


@contextmanager
def _watch(credentials: Path, out: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with (
        log.open("wb") as sink,
        subprocess.Popen(
            [
                *(sys.executable, "-m", "kubemint", "token"),
                *("--credentials", str(credentials), "--watch", "--out", str(out)),
            ],
            stderr=sink,
        ) as proc,
    ):
        try:
            yield proc
        finally:
            proc.terminate()
            proc.wait(timeout=15)


class _PartialFiles:
    """Reads the token file all the time, as an app would, and remembers every content seen
    and any that was not a whole token."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list[tuple[float, str]] = []
        self.broken: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _PartialFiles:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with suppress(FileNotFoundError):
                content = self.path.read_text()
                if content.count(".") != 2 or content != content.strip():
                    self.broken.append(content)
                elif not self.seen or self.seen[-1][1] != content:
                    self.seen.append((time.monotonic(), content))
            time.sleep(0.02)


def test_the_sidecar_picks_up_a_rotated_secret_from_the_swapped_volume_and_the_old_one_dies(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    tmp_path: Path,
) -> None:
    cluster = operator.cluster
    # A 10 minute token: nothing but the swap makes the sidecar fetch again during the test.
    audience, secret_name = _client(operator, namespace, rotateEvery="40s", overlap="15s")
    first = secret_data(cluster, namespace, secret_name) or {}
    volume = SecretVolume(tmp_path / "credentials")
    volume.write(first)
    out = tmp_path / "tokens" / "token"
    out.parent.mkdir()
    log = tmp_path / "watch.log"
    verifier = Verifier(issuer=token_server.issuer, audience=audience)
    with _watch(volume.root, out, log) as proc, _PartialFiles(out) as reader:
        wait_for(lambda: reader.seen, "the first token file", timeout=30)
        rotated = wait_for(
            lambda: (
                (d := secret_data(cluster, namespace, secret_name) or {})
                and d.get("client-secret") != first["client-secret"]
                and d
            ),
            "the operator to rotate the client secret",
            timeout=90,
        )
        before = len(reader.seen)
        time.sleep(PROPAGATION)  # the kubelet's delay: the volume still has the old secret
        swapped = time.monotonic()
        volume.write(rotated)
        wait_for(lambda: len(reader.seen) > before, "a token after the volume swap", timeout=15)
        picked_up = reader.seen[before][0] - swapped
        assert picked_up < 5, f"the swap was noticed after {picked_up:.1f} s"
        verifier.verify(reader.seen[-1][1])
        # The previous secret works until the overlap ends, then never again; the new one works.
        client_id = first["client-id"]
        wait_for(
            lambda: (
                _request(token_server.token_url, client_id, first["client-secret"]).status_code
                == 401
            ),
            "the old secret to be refused after the overlap",
            timeout=40,
        )
        assert _request(token_server.token_url, client_id, rotated["client-secret"]).is_success
        assert proc.poll() is None, log.read_text()
    assert not reader.broken, f"a reader saw a partial token file: {reader.broken[:1]}"
    text = log.read_text()
    assert "the credentials changed" in text, text
    assert "could not refresh" not in text, text


class _Relay:
    """A TCP relay to the token server: refusing connections and cutting open ones (an
    outage), or forwarding."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            # shutdown() first: a bare close() leaves a thread's accept() listening on Linux.
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for sock in self._open:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._open += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def test_the_sidecar_waits_out_token_server_outages_and_never_dies(
    operator: RunningOperator,
    token_server: RunningServer,
    namespace: str,
    tmp_path: Path,
) -> None:
    # 10 s tokens: the sidecar fetches about every second, so an outage meets many attempts.
    _, secret_name = _client(operator, namespace, lifetime="10s")
    data = secret_data(operator.cluster, namespace, secret_name) or {}
    host, port = token_server.issuer.removeprefix("http://").split(":")
    relay = _Relay((host, int(port)))
    volume = SecretVolume(tmp_path / "credentials")
    volume.write({**data, "token-url": f"http://127.0.0.1:{relay.port}/oauth2/token"})
    out = tmp_path / "token"
    log = tmp_path / "watch.log"

    def failures() -> int:
        return log.read_text().count("could not refresh")

    try:
        with _watch(volume.root, out, log) as proc, _PartialFiles(out) as reader:
            # The pod starts before the token server can be reached: refused connections.
            wait_for(lambda: failures() >= 2, "failed attempts while unreachable")
            assert proc.poll() is None, log.read_text()
            assert not out.exists()
            relay.up()
            reachable = time.monotonic()
            wait_for(lambda: reader.seen, "the first token once reachable", timeout=15)
            assert reader.seen[0][0] - reachable < 6  # the retry backoff is capped at 5 s
            wait_for(lambda: len(reader.seen) >= 3, "tokens refreshed", timeout=15)
            # Away again, open connections cut: attempts fail, the file keeps the last token.
            relay.down()
            before = failures()
            wait_for(lambda: failures() >= before + 2, "failed attempts during the outage")
            last = reader.seen[-1][1]
            assert out.read_text() == last
            assert proc.poll() is None, log.read_text()
            relay.up()
            back = time.monotonic()
            wait_for(lambda: reader.seen[-1][1] != last, "a token after the outage", timeout=15)
            assert reader.seen[-1][0] - back < 6
    finally:
        relay.down()
    assert not reader.broken, f"a reader saw a partial token file: {reader.broken[:1]}"
