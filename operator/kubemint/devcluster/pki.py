"""Certificates and keys for a throwaway local control plane.

One CA signs the API server's serving certificate and the client certificates that
authenticate users (CN = user name, O = groups, as kube-apiserver's x509 authenticator
reads them). The ServiceAccount token signer is RSA-2048 so projected tokens are RS256,
the algorithm relying parties expect by default.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=7)
SERVING_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
SERVING_IPS = ("127.0.0.1",)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ControlPlanePKI:
    ca: CertPair
    serving: CertPair
    admin: CertPair
    sa_private_key: Path
    sa_public_key: Path
    authority: CertificateAuthority  # issues further users' client certificates (tenants)


class CertificateAuthority:
    """An in-memory CA that writes PEM files into a directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubemint-dev-ca")])
        self._cert = (
            _builder(name, name, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.pair = self._write("ca", self._cert, self._key)

    def issue_client(self, stem: str, user: str, groups: Sequence[str] = ()) -> CertPair:
        """A client certificate for `user` in `groups`."""
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        return self._issue(stem, x509.Name(attrs), ExtendedKeyUsageOID.CLIENT_AUTH, san=None)

    def issue_serving(
        self,
        stem: str,
        names: Sequence[str] = SERVING_NAMES,
        ips: Sequence[str] = SERVING_IPS,
        common_name: str = "kube-apiserver",
    ) -> CertPair:
        san = x509.SubjectAlternativeName(
            [x509.DNSName(n) for n in names]
            + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        )
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return self._issue(stem, name, ExtendedKeyUsageOID.SERVER_AUTH, san=san)

    def _issue(
        self,
        stem: str,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        san: x509.SubjectAlternativeName | None,
    ) -> CertPair:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            _builder(subject, self._cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return self._write(stem, builder.sign(self._key, hashes.SHA256()), key)

    def _write(
        self, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> CertPair:
        pair = CertPair(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(pair.key, key)
        return pair


def create_pki(
    directory: Path, *, extra_names: Sequence[str] = (), extra_ips: Sequence[str] = ()
) -> ControlPlanePKI:
    """Everything kube-apiserver and its admin client need, written under `directory`.

    `extra_names`/`extra_ips` widen the serving certificate (the node tier adds its node IP,
    the `kubernetes` Service IP and the cluster-domain name pods use)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority(directory)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_private, sa_public = directory / "sa-signer.key", directory / "sa-signer.pub"
    _write_private(sa_private, sa_key)
    sa_public.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ControlPlanePKI(
        ca=ca.pair,
        serving=ca.issue_serving(
            "apiserver", (*SERVING_NAMES, *extra_names), (*SERVING_IPS, *extra_ips)
        ),
        admin=ca.issue_client("admin", "kubemint-admin", ["system:masters"]),
        sa_private_key=sa_private,
        sa_public_key=sa_public,
        authority=ca,
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,  # EC keys sign; they never encipher
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
