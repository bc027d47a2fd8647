"""HTTPS for the token server: a certificate Secret's files, reloaded when they are rotated.

kubelet updates a mounted Secret in place when cert-manager (or a person) rotates it. The
listener keeps one `ssl.SSLContext` for its whole life; its SNI callback, which OpenSSL runs on
every ClientHello (with or without a server name), hands the handshake the context of the
current certificate. A rotation builds a complete new context from the files, checked first
(a PEM certificate, an unencrypted key that belongs to it, not expired), and replaces one
reference: new handshakes get the new certificate, connections already open keep theirs and
are never dropped. Loading into the live context instead could leave it half-updated (OpenSSL
drops the old key when a new certificate does not match it) and fail every handshake.

Files that are missing, half-written or wrong are logged once per content and the previous
certificate keeps serving: a bad rotation never takes the server down or restarts it.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger("kubemint.server")


class CertificateError(Exception):
    """The certificate or key files cannot serve; the message names the file and why."""


@dataclass(frozen=True)
class Certificate:
    """One loaded certificate: the context that serves it and what the log says about it."""

    context: ssl.SSLContext
    digest: str
    subject: str
    serial: int
    not_after: datetime.datetime


def read_files(cert_path: Path, key_path: Path) -> bytes:
    """Both files' bytes (for the change check), or CertificateError naming the missing one."""
    parts = []
    for path in (cert_path, key_path):
        try:
            parts.append(path.read_bytes())
        except OSError as exc:
            raise CertificateError(f"cannot read {path}: {exc.strerror or exc}") from None
    return b"\0".join(parts)


def check_pair(
    cert_pem: bytes, key_pem: bytes, cert_path: Path, key_path: Path, now: datetime.datetime
) -> x509.Certificate:
    """The leaf certificate, if `key_pem` belongs to it and it has not expired; else
    CertificateError with a reason a person can act on (OpenSSL's own are cryptic)."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise CertificateError(f"{cert_path} holds no PEM certificate") from None
    leaf = chain[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise CertificateError(f"{key_path} holds no unencrypted PEM private key") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(
        serialization.Encoding.PEM, spki
    ) != leaf.public_key().public_bytes(serialization.Encoding.PEM, spki):
        raise CertificateError(
            f"the key in {key_path} does not belong to the certificate in {cert_path}"
        )
    if leaf.not_valid_after_utc <= now:
        raise CertificateError(
            f"the certificate in {cert_path} expired at {leaf.not_valid_after_utc.isoformat()}"
        )
    return leaf


def server_context() -> ssl.SSLContext:
    """The TLS settings every context shares (the SNI swap keeps the listener's options)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    return context


def load(cert_path: Path, key_path: Path, now: datetime.datetime | None = None) -> Certificate:
    """The certificate in the files, checked and loaded into a new context."""
    now = now or datetime.datetime.now(datetime.UTC)
    content = read_files(cert_path, key_path)
    cert_pem, _, key_pem = content.partition(b"\0")
    leaf = check_pair(cert_pem, key_pem, cert_path, key_path, now)
    context = server_context()
    try:
        context.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as exc:
        raise CertificateError(f"cannot load {cert_path} and {key_path}: {exc}") from None
    if read_files(cert_path, key_path) != content:  # replaced while loading: next round
        raise _Settling
    return Certificate(
        context,
        hashlib.sha256(content).hexdigest(),
        leaf.subject.rfc4514_string(),
        leaf.serial_number,
        leaf.not_valid_after_utc,
    )


class _Settling(CertificateError):
    def __init__(self) -> None:
        super().__init__("the files changed while they were loaded")


class TlsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.not_after = Gauge(
            "kubemint_tls_certificate_expiry_timestamp_seconds",
            "Unix time at which the certificate being served expires.",
            registry=registry,
        )
        self.reloads = Counter(
            "kubemint_tls_certificate_reloads",
            "Checks that found new certificate files, by outcome (loaded, or failed: the"
            " previous certificate kept serving; the log says why).",
            ["outcome"],
            registry=registry,
        )


class CertificateReloader:
    """Serves the certificate in `cert_path`/`key_path` and follows their rotations."""

    def __init__(
        self, cert_path: Path, key_path: Path, registry: CollectorRegistry | None = None
    ) -> None:
        self.cert_path, self.key_path = cert_path, key_path
        self.current = load(cert_path, key_path)  # at start-up a bad pair is fatal: no old one
        self._failed_digest = ""
        self.metrics = TlsMetrics(registry) if registry is not None else None
        self.listener = self.current.context  # the listener's; handshakes may get a newer one
        self.listener.sni_callback = self._handshake
        self._observe("")
        log.info("serving HTTPS with %s", self._describe(self.current))

    def _handshake(self, connection: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        context = self.current.context  # one read: a concurrent swap is either side of it
        if connection.context is not context:
            connection.context = context

    def check(self) -> str:
        """Look at the files once: "unchanged", "loaded" (new handshakes get the new
        certificate) or "failed" (logged; the current one keeps serving)."""
        try:
            content = read_files(self.cert_path, self.key_path)
        except CertificateError as exc:
            return self._failed("missing", str(exc))
        digest = hashlib.sha256(content).hexdigest()
        if digest in (self.current.digest, self._failed_digest):
            return "unchanged"
        try:
            loaded = load(self.cert_path, self.key_path)
        except _Settling:
            return "unchanged"  # a Secret update in progress: looked at again next round
        except CertificateError as exc:
            return self._failed(digest, str(exc))
        previous, self.current, self._failed_digest = self.current, loaded, ""
        log.info(
            "TLS certificate rotated: now %s (was serial %s)",
            self._describe(loaded),
            f"{previous.serial:x}",
        )
        self._observe("loaded")
        return "loaded"

    def run(self, halt: threading.Event, interval: float) -> None:
        while not halt.wait(interval):
            try:
                self.check()
            except Exception:  # never let the watcher die: the server would stop rotating
                log.exception("checking the TLS certificate files failed")

    def _failed(self, digest: str, reason: str) -> str:
        if digest != self._failed_digest:  # once per bad content, not every interval
            self._failed_digest = digest
            log.error(
                "TLS certificate not reloaded, still serving %s: %s",
                self._describe(self.current),
                reason,
            )
            self._observe("failed")
        return "failed"

    def _observe(self, outcome: str) -> None:
        if self.metrics is None:
            return
        self.metrics.not_after.set(self.current.not_after.timestamp())
        if outcome:
            self.metrics.reloads.labels(outcome).inc()

    @staticmethod
    def _describe(cert: Certificate) -> str:
        return f"{cert.subject} serial {cert.serial:x}, expiring {cert.not_after.isoformat()}"
