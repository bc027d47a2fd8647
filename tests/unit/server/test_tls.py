"""server.tls: which certificate files serve, and what a rotation to bad files leaves behind."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest

from kubemint.config import ServerSettings
from kubemint.devcluster.pki import CertificateAuthority, CertPair
from kubemint.server.tls import CertificateError, CertificateReloader, load


@pytest.fixture
def authority(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path)


def _install(pair: CertPair, into: Path) -> tuple[Path, Path]:
    into.mkdir(exist_ok=True)
    shutil.copy(pair.cert, into / "tls.crt")
    shutil.copy(pair.key, into / "tls.key")
    return into / "tls.crt", into / "tls.key"


def test_a_matching_pair_loads_and_names_its_certificate(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    cert, key = _install(authority.issue_serving("a", common_name="first"), tmp_path / "m")
    loaded = load(cert, key)
    assert loaded.subject == "CN=first"


@pytest.mark.parametrize(
    ("breaking", "message"),
    [
        ("garbage-cert", "holds no PEM certificate"),
        ("garbage-key", "holds no unencrypted PEM private key"),
        ("foreign-key", "does not belong to the certificate"),
        ("missing-key", "cannot read"),
    ],
)
def test_bad_files_are_refused_with_a_reason(
    authority: CertificateAuthority, tmp_path: Path, breaking: str, message: str
) -> None:
    cert, key = _install(authority.issue_serving("a"), tmp_path / "m")
    if breaking == "garbage-cert":
        cert.write_text("hello\n")
    elif breaking == "garbage-key":
        key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    elif breaking == "foreign-key":
        shutil.copy(authority.issue_serving("b").key, key)
    else:
        key.unlink()
    with pytest.raises(CertificateError, match=message):
        load(cert, key)


def test_an_expired_certificate_is_refused(authority: CertificateAuthority, tmp_path: Path) -> None:
    cert, key = _install(authority.issue_serving("a"), tmp_path / "m")
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    with pytest.raises(CertificateError, match="expired at"):
        load(cert, key, now=later)


def test_the_reloader_takes_good_rotations_and_keeps_the_last_good_one_over_bad_ones(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    cert, key = _install(authority.issue_serving("a", common_name="first"), tmp_path / "m")
    reloader = CertificateReloader(cert, key)
    listener = reloader.listener
    assert reloader.check() == "unchanged"
    shutil.copy(authority.issue_serving("b").key, key)  # half a rotation: a foreign key
    assert reloader.check() == "failed"
    assert reloader.check() == "unchanged"  # the same bad content: not reported again
    assert reloader.current.subject == "CN=first"
    _install(authority.issue_serving("c", common_name="second"), tmp_path / "m")
    assert reloader.check() == "loaded"
    assert reloader.current.subject == "CN=second"
    assert reloader.listener is listener  # the listening socket's context never changes


def test_https_needs_both_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="KUBEMINT_TLS_KEY_FILE must be set too"):
        ServerSettings.from_env({"KUBEMINT_TLS_CERT_FILE": "/tls/tls.crt"})
    with pytest.raises(ValueError, match="KUBEMINT_TLS_CERT_FILE must be set too"):
        ServerSettings.from_env({"KUBEMINT_TLS_KEY_FILE": "/tls/tls.key"})
    settings = ServerSettings.from_env(
        {"KUBEMINT_TLS_CERT_FILE": "/tls/tls.crt", "KUBEMINT_TLS_KEY_FILE": "/tls/tls.key"}
    )
    assert settings.tls_cert_file == Path("/tls/tls.crt")
    assert ServerSettings.from_env({}).tls_cert_file is None
    assert ServerSettings.from_env({}).metrics_port == 9090
