"""`kubemint token`: the --out forms, usage errors, and one line (never a traceback) when the
token endpoint cannot be reached."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kubemint.client.command import TokenFile, UsageError, parse_out


def test_a_plain_out_takes_the_commands_audience_and_scope() -> None:
    assert parse_out("/tokens/a", "https://a", "read") == TokenFile(
        Path("/tokens/a"), "https://a", "read"
    )


def test_an_out_spec_names_its_own_audience_and_scopes() -> None:
    spec = "path=/tokens/files,audience=https://files.example.com,scope=file.view file.create"
    assert parse_out(spec, "https://default", "read") == TokenFile(
        Path("/tokens/files"), "https://files.example.com", "file.view file.create"
    )
    assert parse_out("path=/tokens/b", "https://default", "read") == TokenFile(
        Path("/tokens/b"), "https://default", "read"
    )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("path=/t,aud=https://a", "'aud=https://a' is not one of path=, audience=, scope="),
        ("path=/t,scope=a,scope=b", "scope= is given twice"),
        ("path=,scope=a", "path= is empty"),
        ("path=/t,https://a", "is not one of"),
    ],
)
def test_a_bad_out_spec_says_which_part(value: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        parse_out(value, None, None)


def _kubemint_token(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubemint", "token", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def unreachable(tmp_path: Path) -> Path:
    """Mounted credentials whose token URL is a port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {
        "client-id": "ns.app",
        "client-secret": "s3cret",
        "token-url": f"http://127.0.0.1:{port}/oauth2/token",
    }.items():
        (tmp_path / name).write_text(value)
    return tmp_path


def test_an_unreachable_token_server_is_one_line_and_exit_1(unreachable: Path) -> None:
    result = _kubemint_token("--credentials", str(unreachable))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kubemint token: ConnectError: ")
    assert "/oauth2/token" in lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--watch",), "--watch needs --out FILE"),
        (("--out", "/tmp/x"), "--out needs --watch"),
        (("--watch", "--out", "/tmp/x", "--out", "/tmp/x"), "each --out needs its own file"),
        (("--watch", "--out", "/tmp/x", "--renew-before", "-1"), "--renew-before must be"),
        (("--watch", "--out", "/tmp/x", "--retry-max", "0"), "--retry-max must be"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    unreachable: Path, args: tuple[str, ...], says: str
) -> None:
    result = _kubemint_token("--credentials", str(unreachable), *args)
    assert result.returncode == 2
    assert result.stderr.startswith("kubemint token: ")
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
