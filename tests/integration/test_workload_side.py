"""Workloads get tokens from mounted credentials; resource servers verify them (over HTTP)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubemint.client import Credentials, KubemintAuth, TokenSource
from kubemint.crypto import keys
from kubemint.crypto.jwt import Signer
from kubemint.verify import InvalidToken, JWKSCache, Verifier
from kubemint.verify.middleware import BearerAuthMiddleware, requires_scopes
from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.kube_helpers import apply, custom, secret_data, wait_for, wait_ready


@pytest.fixture
def mounted(
    operator: RunningOperator, token_server: RunningServer, namespace: str, tmp_path: Path
) -> tuple[Path, str]:
    """A client granted `read` on its audience, its Secret written out as a volume would be."""
    audience = f"https://{namespace}.api.test"
    apply(
        operator.cluster,
        custom(
            "OAuth2Client",
            "app",
            namespace,
            audiences=[audience],
            scopes=["read", "write"],
            tokenLifetime="10s",
        ),
        custom(
            "AccessRule",
            "app",
            namespace,
            audience=audience,
            scopes=["read"],
            subjects=[{"kind": "OAuth2Client", "name": "app"}],
        ),
    )
    wait_ready(operator.cluster, "OAuth2Client", namespace, "app")
    volume = tmp_path / "credentials"
    volume.mkdir()
    for key, value in (secret_data(operator.cluster, namespace, "app-credentials") or {}).items():
        (volume / key).write_text(value)
    with TokenSource(Credentials.from_directory(volume)) as source:
        wait_for(lambda: _try(source), "the token server to know the client", timeout=15)
    return volume, audience


def _try(source: TokenSource) -> bool:
    try:
        source.token(force=True)
    except Exception:
        return False
    return True


def test_kubemint_token_prints_a_token_from_a_mounted_secret(
    token_server: RunningServer, mounted: tuple[Path, str]
) -> None:
    volume, audience = mounted
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubemint",
            "token",
            "--credentials",
            str(volume),
            "--scope",
            "read",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    claims = Verifier(issuer=token_server.issuer, audience=audience).verify(
        result.stdout.strip(), ["read"]
    )
    assert claims["scope"] == "read"
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubemint",
            "token",
            "--credentials",
            str(volume.parent / "nowhere"),
        ],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1
    assert "mount the client's Secret" in missing.stderr


def test_kubemint_verify_checks_a_token_like_a_resource_server(
    token_server: RunningServer, mounted: tuple[Path, str]
) -> None:
    volume, audience = mounted
    with TokenSource(Credentials.from_directory(volume), scope="read") as source:
        token = source.token()

    def verify(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "kubemint", "verify", "--issuer", token_server.issuer]
        return subprocess.run(
            [*command, *args], input=stdin, capture_output=True, text=True, timeout=30
        )

    good = verify("--audience", audience, "--scope", "read", token)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["aud"] == audience
    assert verify("--audience", audience, stdin=token + "\n").returncode == 0
    response = json.dumps({"access_token": token, "token_type": "Bearer"})
    assert verify("--audience", audience, stdin=response).returncode == 0
    assert verify("--audience", audience, stdin='{"error": "invalid_client"}').returncode == 1
    wrong_audience = verify("--audience", "https://elsewhere.test", token)
    assert (wrong_audience.returncode, wrong_audience.stdout) == (1, "")
    assert "audience" in wrong_audience.stderr
    no_scope = verify("--audience", audience, "--scope", "read write", token)
    assert no_scope.returncode == 1
    assert "insufficient scope (missing: write)" in no_scope.stderr
    tampered = verify("--audience", audience, token[:-6] + "AAAAAA")
    assert tampered.returncode == 1
    assert token not in tampered.stderr


def test_kubemint_token_signs_client_assertions_for_jwt_clients(
    operator: RunningOperator, token_server: RunningServer, namespace: str, tmp_path: Path
) -> None:
    """client_secret_jwt signs with the mounted secret; private_key_jwt with the client's key."""
    audience = f"https://{namespace}.jwt.test"
    key = keys.generate("ES256")
    apply(
        operator.cluster,
        custom(
            "OAuth2Client",
            "hmac",
            namespace,
            audiences=[audience],
            scopes=["read"],
            authMethod="client_secret_jwt",
        ),
        custom(
            "OAuth2Client",
            "signer",
            namespace,
            audiences=[audience],
            scopes=["read"],
            authMethod="private_key_jwt",
            jwks={"keys": [key.public_jwk()]},
        ),
        custom(
            "AccessRule",
            "jwt",
            namespace,
            audience=audience,
            scopes=["read"],
            subjects=[{"kind": "OAuth2Client", "name": n} for n in ("hmac", "signer")],
        ),
    )
    directories = {}
    for name in ("hmac", "signer"):
        wait_ready(operator.cluster, "OAuth2Client", namespace, name)
        directories[name] = tmp_path / name
        directories[name].mkdir()
        data = secret_data(operator.cluster, namespace, f"{name}-credentials") or {}
        for item, value in data.items():
            (directories[name] / item).write_text(value)
    private_key = tmp_path / "signer.pem"
    private_key.write_text(key.private_pem)

    def token(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kubemint", "token", "--scope", "read", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )

    for name, extra in (("hmac", []), ("signer", ["--private-key", str(private_key)])):
        args = ["--credentials", str(directories[name]), *extra]
        result = wait_for(
            lambda args=args: (r := token(*args)).returncode == 0 and r, "a token", timeout=20
        )
        claims = Verifier(issuer=token_server.issuer, audience=audience).verify(
            result.stdout.strip(), ["read"]
        )
        assert claims["client_id"] == (directories[name] / "client-id").read_text()
    keyless = token("--credentials", str(directories["signer"]))
    assert keyless.returncode == 1
    assert "needs the client's private key" in keyless.stderr


def test_a_projected_token_file_works_with_kubemint_token(
    operator: RunningOperator, token_server: RunningServer, namespace: str, tmp_path: Path
) -> None:
    audience = f"https://{namespace}.fed.test"
    operator.cluster.kubectl("create", "serviceaccount", "pod-sa", "-n", namespace)
    apply(
        operator.cluster,
        custom(
            "OAuth2Client",
            "pods",
            namespace,
            audiences=[audience],
            authMethod="none",
            scopes=["read"],
        ),
        custom(
            "ServiceAccount",
            "pod-identity",
            namespace,
            clients=["pods"],
            federation={"kubernetes": [{"serviceAccountName": "pod-sa"}]},
        ),
        custom(
            "AccessRule",
            "pods",
            namespace,
            audience=audience,
            scopes=["read"],
            subjects=[{"kind": "ServiceAccount", "name": "pod-identity"}],
        ),
    )
    wait_ready(operator.cluster, "ServiceAccount", namespace, "pod-identity")
    projected = tmp_path / "token"
    projected.write_text(
        operator.cluster.kubectl(
            "create", "token", "pod-sa", "-n", namespace, "--audience", token_server.issuer
        ).stdout.strip()
    )
    command = [
        sys.executable,
        "-m",
        "kubemint",
        "token",
        "--projected-token",
        str(projected),
        "--client-id",
        f"{namespace}.pods",
        "--token-url",
        token_server.token_url,
    ]
    result = wait_for(
        lambda: (
            (r := subprocess.run(command, capture_output=True, text=True)).returncode == 0 and r
        ),
        "a token for the projected ServiceAccount token",
        timeout=15,
    )
    claims = Verifier(issuer=token_server.issuer, audience=audience).verify(result.stdout.strip())
    assert claims["sub"] == f"kubemint:serviceaccount:{namespace}:pod-identity"


def test_the_token_source_caches_and_renews_before_expiry(
    token_server: RunningServer, mounted: tuple[Path, str]
) -> None:
    volume, _ = mounted
    now = [time.time()]
    source = TokenSource(Credentials.from_directory(volume), min_margin=1, clock=lambda: now[0])
    first = source.token()
    assert source.token() == first  # cached
    assert source.refresh_at - now[0] == pytest.approx(8, abs=1)  # 80% of a 10 s lifetime
    now[0] = source.refresh_at + 0.1
    time.sleep(1.1)  # a new iat, so a new token
    assert source.token() == first  # still valid: handed out while it renews in the background
    source.wait_renewal(10)
    assert source.token() != first
    with httpx.Client(auth=KubemintAuth(source)) as http:
        echo = http.get(token_server.issuer + "/healthz")
        assert echo.request.headers["authorization"].startswith("Bearer ")
    source.close()


def test_the_token_file_is_rewritten_atomically_before_expiry(
    token_server: RunningServer, mounted: tuple[Path, str], tmp_path: Path
) -> None:
    volume, _ = mounted
    out = tmp_path / "token"
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubemint",
            "token",
            "--credentials",
            str(volume),
            "--watch",
            "--out",
            str(out),
        ],
        stderr=subprocess.DEVNULL,
    ) as proc:
        try:
            first = wait_for(lambda: out.exists() and out.read_text(), "the token file")
            assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
            seen = {first}
            deadline = time.monotonic() + 12  # less than lifetime 10 s + margin
            while len(seen) < 2 and time.monotonic() < deadline:
                content = out.read_text()
                assert content.count(".") == 2, "a reader saw a partial token file"
                seen.add(content)
                time.sleep(0.05)
            assert len(seen) >= 2, "the token file was not refreshed before expiry"
            assert not [p for p in tmp_path.iterdir() if p.name.startswith(".token.")]
        finally:
            proc.terminate()
            assert proc.wait(timeout=10) == 0


def test_the_verifier_accepts_good_tokens_and_rejects_the_rest(
    token_server: RunningServer, mounted: tuple[Path, str]
) -> None:
    volume, audience = mounted
    with TokenSource(Credentials.from_directory(volume), scope="read") as source:
        token = source.token()
    verifier = Verifier(issuer=token_server.issuer, audience=audience)
    assert verifier.verify(token, ["read"])["scope"] == "read"

    def reason(check: Any) -> str:
        with pytest.raises(InvalidToken) as caught:
            check()
        return f"{caught.value.status} {caught.value.message}"

    later = Verifier(
        issuer=token_server.issuer,
        audience=audience,
        clock=lambda: time.time() + 60,
        jwks=verifier.jwks,
    )
    assert reason(lambda: later.verify(token)).startswith("401")
    other = Verifier(issuer=token_server.issuer, audience="https://other.test", jwks=verifier.jwks)
    assert reason(lambda: other.verify(token)).startswith("401")
    assert reason(lambda: verifier.verify(token, ["write"])).startswith("403")
    head, body, sig = token.split(".")
    assert reason(lambda: verifier.verify(f"{head}.{body}x.{sig}")).startswith("401")
    stranger = Signer(keys.generate("ES256")).sign(
        {
            "iss": token_server.issuer,
            "aud": audience,
            "sub": "x",
            "client_id": "x",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        }
    )
    assert reason(lambda: verifier.verify(stranger)) == "401 unknown signing key"


def test_an_unknown_kid_makes_the_cache_refetch_once_per_cooldown() -> None:
    fetches: list[float] = []

    def fetch(url: str) -> dict[str, Any]:
        fetches.append(time.monotonic())
        return {"keys": [{"kid": "a", "kty": "EC"}]}

    cache = JWKSCache("https://issuer.test/oauth2/jwks", cooldown=60, fetch=fetch)
    assert cache.key("a") is not None
    assert cache.key("b") is None
    assert cache.key("c") is None
    assert len(fetches) == 1  # the cooldown holds back refetches for garbage kids


@pytest.fixture
def protected_api(token_server: RunningServer, mounted: tuple[Path, str]) -> Iterator[str]:
    """A resource server with the middleware, served by uvicorn on a free port."""
    _, audience = mounted

    @requires_scopes("write")
    async def write(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def read(request: Request) -> Response:
        return JSONResponse({"sub": request.state.claims["sub"]})

    app = Starlette(routes=[Route("/read", read), Route("/write", write)])
    verifier = Verifier(issuer=token_server.issuer, audience=audience)
    app.add_middleware(BearerAuthMiddleware, verifier=verifier)  # type: ignore[arg-type]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the resource server to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_the_middleware_answers_rfc_6750_challenges_over_http(
    protected_api: str, mounted: tuple[Path, str]
) -> None:
    volume, _ = mounted
    source = TokenSource(Credentials.from_directory(volume), scope="read")
    with source, httpx.Client(auth=KubemintAuth(source)) as http:
        ok = http.get(protected_api + "/read")
        assert ok.status_code == 200
        assert ok.json()["sub"].endswith(".app")
        denied = http.get(protected_api + "/write")
        assert denied.status_code == 403
        assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
        assert 'scope="write"' in denied.headers["www-authenticate"]
    anonymous = httpx.get(protected_api + "/read")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith('Bearer realm="kubemint"')
