"""HTTPS servers that answer a JWKS fetch well or badly, for the fetcher's unit tests and the
federation attack tests: a real TLS endpoint per behaviour, on a loopback address.

- `serve`: 200 with the current `jwks` (mutable: rotate a key by assigning it).
- `silent`: accepts TCP and never says anything (not even the TLS handshake).
- `drip`: completes TLS, then sends a response head one byte every `drip_every` seconds, forever.
- `redirect`: 302 to `location`.
- `error`: 500 with a body that must never show anywhere (`SECRET_BODY`).
- `huge`: 200 with a body of `size` bytes and no Content-Length (read until close).
The certificate is for 127.0.0.1, 127.0.0.2 and localhost, from a CA written to `ca_file`.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SECRET_BODY = "internal-metadata-token-do-not-leak"


@dataclass(frozen=True)
class JWKSAuthority:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_ca(directory: Path) -> JWKSAuthority:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwks-test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("127.0.0.2")),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwks")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = JWKSAuthority(directory / "ca.crt", directory / "jwks.crt", directory / "jwks.key")
    paths.ca_file.write_bytes(ca.public_bytes(pem))
    paths.cert_file.write_bytes(cert.public_bytes(pem))
    paths.key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def client_context(ca: JWKSAuthority) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.ca_file))


@dataclass
class JWKSServer:
    ca: JWKSAuthority
    behaviour: str = "serve"
    host: str = "127.0.0.2"
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    location: str = ""
    size: int = 0
    drip_every: float = 0.5
    requests: int = 0  # connections accepted
    _sock: socket.socket | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _conns: list[socket.socket] = field(default_factory=list, repr=False)

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}/jwks"

    def start(self) -> JWKSServer:
        self._sock = socket.create_server((self.host, 0))
        self._sock.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for conn in [*self._conns, self._sock]:
            if conn is not None:
                conn.close()

    def __enter__(self) -> JWKSServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.requests += 1
            self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            if self.behaviour == "silent":
                self._stop.wait()
                return
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.ca.cert_file, self.ca.key_file)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    self._conns.append(tls)
                    tls.settimeout(10)
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = tls.recv(4096)
                        if not chunk:
                            return
                        request += chunk
                    self._respond(tls)
            except OSError:
                return

    def _respond(self, tls: ssl.SSLSocket) -> None:
        if self.behaviour == "drip":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 10_000
            for byte in head:
                if self._stop.wait(self.drip_every):
                    return
                tls.sendall(bytes([byte]))
            return
        if self.behaviour == "redirect":
            tls.sendall(
                f"HTTP/1.1 302 Found\r\nLocation: {self.location}\r\n"
                "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            return
        if self.behaviour == "error":
            tls.sendall(b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\n" + SECRET_BODY.encode())
            return
        if self.behaviour == "huge":
            tls.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            block = b" " * 65536
            sent = 0
            while sent < self.size and not self._stop.is_set():
                tls.sendall(block)
                sent += len(block)
            return
        body = json.dumps(self.jwks).encode()
        tls.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
