"""The resource-server snippets in examples/verify/ (Python, Node, Go, Java), each run as its own
program against real tokens from the real token server, one per signing algorithm, and against
tokens that must be refused: tampered, for another audience or issuer, short of a scope, `none`
or HMAC algorithms, a foreign key, the wrong `typ`, expired or not yet valid, or with no issuer
or audience configured.

The Node, Go and Java programs are built once per module, in parallel and while the operator,
the token server and the tokens are being set up, into a temporary directory (the work tree
stays clean). A missing toolchain fails the tests: these snippets are documentation that must
keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.integration.conftest import RunningOperator, RunningServer
from tests.integration.example_programs import Builds, Examples, building, command_line, ready
from tests.integration.kube_helpers import apply, custom, secret_data, wait_ready

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "verify"
SNIPPETS = Examples(EXAMPLES, "verify.mjs", "verify-go", "verify.jar")
# SigningKey name in the token server's namespace for each algorithm (`default` is ES256).
KEYS = {"ES256": "default", "ES384": "es384", "RS256": "rs256", "PS256": "ps256", "EdDSA": "eddsa"}
PROGRAMS = ("python", "python-pyjwt", "node", "go", "java")
# What a snippet's library cannot verify: the snippet leaves the algorithm out of its allow-list,
# so it must refuse such tokens cleanly (and this test notices when that changes).
UNSUPPORTED = {
    # Nimbus's DefaultJWTProcessor selects java.security.Key objects, and an OKP (Ed25519) JWK
    # has none: OctetKeyPair.toPublicKey() throws and DefaultJWSVerifierFactory knows no EdDSA.
    ("java", "EdDSA"),
}
FORGED_ISSUER = "https://forged.kubemint.test"

# Cold builds download jose, the Go modules and Maven's plugins and jars.
pytestmark = pytest.mark.timeout(900)


# --- building the programs ------------------------------------------------------------------


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builds]:
    """The command line that runs each snippet (the token goes in KUBEMINT_TOKEN), as futures:
    the three builds run in the background while the other fixtures are set up."""
    with building(SNIPPETS, tmp_path_factory.mktemp("verify-snippets")) as built:
        for name, script in (("python", "verify.py"), ("python-pyjwt", "verify_pyjwt.py")):
            built[name] = ready([sys.executable, str(EXAMPLES / "python" / script)])
        yield built


# --- real tokens from the token server ------------------------------------------------------


@dataclass
class Issued:
    issuer: str
    audience: str
    tokens: dict[str, str]  # by algorithm
    client_ids: dict[str, str]  # by algorithm

    @property
    def jwks_url(self) -> str:
        return self.issuer + "/oauth2/jwks"


@pytest.fixture(scope="module")
def issued(operator: RunningOperator, token_server: RunningServer) -> Iterator[Issued]:
    """A `read` token for the same audience signed with each algorithm kubemint supports. The
    JWKS also holds an RSA-OAEP-256 encryption key, as it does where tokens are encrypted."""
    cluster = operator.cluster
    namespace = f"v-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        yield _issue(operator, token_server, namespace)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _issue(operator: RunningOperator, token_server: RunningServer, namespace: str) -> Issued:
    cluster = operator.cluster
    audience = f"https://{namespace}.api.test"
    keys = {alg: name for alg, name in KEYS.items() if name != "default"}
    apply(
        cluster,
        *(custom("SigningKey", name, operator.namespace, algorithm=a) for a, name in keys.items()),
        custom("SigningKey", "enc", operator.namespace, algorithm="RSA-OAEP-256", use="enc"),
    )
    for name in [*keys.values(), "enc"]:
        wait_ready(cluster, "SigningKey", operator.namespace, name)
    clients = {alg: f"app-{alg.lower()}" for alg in KEYS}
    apply(
        cluster,
        *(
            custom(
                "OAuth2Client",
                name,
                namespace,
                audiences=[audience],
                scopes=["read", "write"],
                signingKey=KEYS[alg],
            )
            for alg, name in clients.items()
        ),
        custom(
            "AccessRule",
            "api",
            namespace,
            audience=audience,
            scopes=["read", "write"],
            subjects=[{"kind": "OAuth2Client", "name": name} for name in clients.values()],
        ),
    )
    wait_ready(cluster, "AccessRule", namespace, "api")
    issued = Issued(token_server.issuer, audience, {}, {})
    with httpx.Client(timeout=10) as http:
        for alg, name in clients.items():
            wait_ready(cluster, "OAuth2Client", namespace, name)
            data = secret_data(cluster, namespace, f"{name}-credentials")
            assert data is not None
            issued.client_ids[alg] = data["client-id"]
            issued.tokens[alg] = _token(http, token_server, data, scope="read")
        published = http.get(issued.jwks_url).json()["keys"]
    # What the snippets fetch: a key per algorithm, and an encryption key they must skip.
    assert {(k["alg"], k["use"]) for k in published} >= {
        *((alg, "sig") for alg in KEYS),
        ("RSA-OAEP-256", "enc"),
    }, published
    return issued


def _token(http: httpx.Client, server: RunningServer, data: dict[str, str], **form: str) -> str:
    """client_credentials, retried briefly: the server follows the API a moment behind."""
    auth = (data["client-id"], data["client-secret"])
    body = {"grant_type": "client_credentials", **form}
    deadline = time.monotonic() + 15
    while True:
        response = http.post(server.token_url, data=body, auth=auth)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.status_code == 200, f"{response.status_code} {response.text}"
    token: str = response.json()["access_token"]
    return token


# --- forged tokens: a key of our own, published at a JWKS URL of our own ---------------------


@dataclass
class Forger:
    """Signs tokens with an ES256 key whose JWKS it serves, so `typ` and the time claims can be
    tested in isolation: a token that is right in every other respect is accepted."""

    jwks_url: str
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    kid: str = "forged-1"

    def sign(self, audience: str, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": FORGED_ISSUER,
            "sub": "forged-sub",
            "aud": audience,
            "client_id": "forged-client",
            "scope": "read",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        header = {"kid": self.kid, "typ": "at+jwt", **(headers or {})}
        return jwt.encode(payload, self.key, algorithm="ES256", headers=header)


@pytest.fixture(scope="module")
def forger() -> Iterator[Forger]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)}
    jwk.update({"kid": "forged-1", "alg": "ES256", "use": "sig"})
    body = json.dumps({"keys": [jwk]}).encode()

    class JWKS(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), JWKS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Forger(f"http://127.0.0.1:{server.server_port}/jwks", key)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- running a snippet ----------------------------------------------------------------------


@dataclass
class Case:
    token: str
    jwks_url: str
    issuer: str
    audience: str
    required_scope: str | None = "read"


def _run(command: list[str], case: Case) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEMINT_")}
    settings = {
        "KUBEMINT_JWKS_URL": case.jwks_url,
        "KUBEMINT_ISSUER": case.issuer,
        "KUBEMINT_AUDIENCE": case.audience,
        "KUBEMINT_TOKEN": case.token,
        "KUBEMINT_REQUIRED_SCOPE": case.required_scope,
    }
    env.update({k: v for k, v in settings.items() if v})  # empty: unset
    return subprocess.run(
        command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )


def _accepted(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, f"refused a good token:\n{result.stderr}"
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    parsed: dict[str, Any] = json.loads(lines[0])
    return parsed


def _refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (
        f"exit {result.returncode} (want 1)\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    assert result.stdout == "", f"printed claims for a bad token: {result.stdout}"
    reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    assert reason.startswith("invalid token"), f"no reason given:\n{result.stderr}"
    return reason


@pytest.mark.parametrize("alg", list(KEYS))
@pytest.mark.parametrize("program", PROGRAMS)
def test_a_snippet_accepts_a_real_token(
    builds: Builds, issued: Issued, program: str, alg: str
) -> None:
    command = command_line(builds, program)
    case = Case(issued.tokens[alg], issued.jwks_url, issued.issuer, issued.audience)
    if (program, alg) in UNSUPPORTED:
        _refused(_run(command, case))
        return
    claims = _accepted(_run(command, case))
    client_id = issued.client_ids[alg]
    assert claims == {"sub": client_id, "client_id": client_id, "scope": "read"}


# --- tokens to refuse -----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(token: str) -> tuple[dict[str, Any], str, str]:
    header, payload, signature = token.split(".")
    return json.loads(base64.urlsafe_b64decode(header + "==")), payload, signature


def _tampered(issued: Issued, forger: Forger) -> Case:
    token = issued.tokens["ES256"]
    i = len(token) - 20  # well inside the signature (never its last, partly padding, character)
    flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
    return Case(flipped, issued.jwks_url, issued.issuer, issued.audience)


def _tampered_claims(issued: Issued, forger: Forger) -> Case:
    header, payload, signature = issued.tokens["ES256"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "read write"
    token = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    return Case(token, issued.jwks_url, issued.issuer, issued.audience, "write")


def _other_audience(issued: Issued, forger: Forger) -> Case:
    other = "https://other.api.test"
    return Case(issued.tokens["ES256"], issued.jwks_url, issued.issuer, other)


def _missing_scope(issued: Issued, forger: Forger) -> Case:
    token = issued.tokens["ES256"]  # granted read and write, but asked only for read
    return Case(token, issued.jwks_url, issued.issuer, issued.audience, "write")


def _other_issuer(issued: Issued, forger: Forger) -> Case:
    issuer = "https://kubemint.example"
    return Case(issued.tokens["ES256"], issued.jwks_url, issuer, issued.audience)


def _no_issuer(issued: Issued, forger: Forger) -> Case:
    """Some libraries skip the issuer check when given none: the snippets must not run so."""
    return Case(issued.tokens["ES256"], issued.jwks_url, "", issued.audience)


def _no_audience(issued: Issued, forger: Forger) -> Case:
    return Case(issued.tokens["ES256"], issued.jwks_url, issued.issuer, "")


def _alg_none(issued: Issued, forger: Forger) -> Case:
    header, payload, _ = _segments(issued.tokens["ES256"])
    forged = _b64(json.dumps({**header, "alg": "none"}).encode())
    return Case(f"{forged}.{payload}.", issued.jwks_url, issued.issuer, issued.audience)


def _hmac_with_public_key(issued: Issued, forger: Forger) -> Case:
    """The classic confusion: HS256 keyed with the issuer's public key (PEM and JWK forms)."""
    header, payload, _ = _segments(issued.tokens["RS256"])
    jwks = httpx.get(issued.jwks_url, timeout=10).json()
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    public = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
    assert isinstance(public, rsa.RSAPublicKey)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{_b64(json.dumps({**header, 'alg': 'HS256'}).encode())}.{payload}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return Case(f"{signing_input}.{_b64(mac)}", issued.jwks_url, issued.issuer, issued.audience)


def _foreign_key(issued: Issued, forger: Forger) -> Case:
    """Signed by a key the issuer never published (an unknown kid: a JWKS refresh, no key)."""
    token = forger.sign(issued.audience, iss=issued.issuer)
    return Case(token, issued.jwks_url, issued.issuer, issued.audience)


def _forged(headers: dict[str, Any] | None = None, **offsets: int) -> Callable[..., Case]:
    """A token from our own key; `offsets` set time claims, in seconds from now."""

    def make(issued: Issued, forger: Forger) -> Case:
        now = int(time.time())
        token = forger.sign(issued.audience, headers, **{k: now + v for k, v in offsets.items()})
        return Case(token, forger.jwks_url, FORGED_ISSUER, issued.audience)

    return make


REFUSED: dict[str, Callable[[Issued, Forger], Case]] = {
    "tampered-signature": _tampered,
    "tampered-claims": _tampered_claims,
    "other-audience": _other_audience,
    "missing-scope": _missing_scope,
    "other-issuer": _other_issuer,
    "issuer-unset": _no_issuer,
    "audience-unset": _no_audience,
    "alg-none": _alg_none,
    "hs256-with-public-key": _hmac_with_public_key,
    "foreign-key": _foreign_key,
    "typ-jwt": _forged({"typ": "JWT"}),
    "typ-missing": _forged({"typ": None}),
    "expired": _forged(exp=-120, iat=-400),  # well past the 30 s leeway
    "not-yet-valid": _forged(nbf=300),
}
# Forged tokens that are right: they prove the refusals above are for the reason named.
ACCEPTED: dict[str, Callable[[Issued, Forger], Case]] = {
    "forged-but-well-formed": _forged(),
    "expired-within-leeway": _forged(exp=-5, iat=-300),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
@pytest.mark.parametrize("program", PROGRAMS)
def test_a_snippet_accepts_a_well_formed_token_from_our_own_key(
    builds: Builds,
    issued: Issued,
    forger: Forger,
    program: str,
    name: str,
) -> None:
    claims = _accepted(_run(command_line(builds, program), ACCEPTED[name](issued, forger)))
    assert claims == {"sub": "forged-sub", "client_id": "forged-client", "scope": "read"}


@pytest.mark.parametrize("name", list(REFUSED))
@pytest.mark.parametrize("program", PROGRAMS)
def test_a_snippet_refuses_a_bad_token(
    builds: Builds,
    issued: Issued,
    forger: Forger,
    program: str,
    name: str,
) -> None:
    reason = _refused(_run(command_line(builds, program), REFUSED[name](issued, forger)))
    print(f"{program} {name}: {reason}")


def test_the_readme_quotes_the_programs() -> None:
    """Every line of examples/verify/README.md's quoted blocks is in the program it names."""
    readme = (EXAMPLES / "README.md").read_text()
    quotes = re.findall(r"<!-- quote: (\S+) -->\n```\w*\n(.*?)\n```", readme, re.DOTALL)
    assert sorted(path for path, _ in quotes) == [
        "go/main.go",
        "java/src/main/java/io/kubemint/examples/Verify.java",
        "node/verify.mjs",
        "python/verify.py",
        "python/verify_pyjwt.py",
    ]
    for path, block in quotes:
        source = {line.strip() for line in (EXAMPLES / path).read_text().splitlines()}
        missing = [line for line in block.splitlines() if line.strip() not in source | {""}]
        assert not missing, f"examples/verify/README.md quotes lines that {path} lacks: {missing}"
