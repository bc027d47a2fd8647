"""Where a workload's credentials come from: a mounted client Secret, or a projected token.

Both are read from files on every token request, so a rotated client secret or a refreshed
projected ServiceAccount token (kubelet rewrites both in place) is used without a restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

from kubemint.crypto.client_assertions import private_key_assertion, secret_assertion

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class CredentialsError(ValueError):
    pass


@dataclass(frozen=True)
class Credentials:
    token_url: str
    client_id: str
    secret_file: Path | None = None  # a mounted `client-secret` key
    projected_token_file: Path | None = None  # a projected ServiceAccount token
    auth_method: str = "client_secret_basic"
    private_key_file: Path | None = None  # private_key_jwt: PEM or a private JWK

    @classmethod
    def from_directory(cls, directory: Path, private_key: Path | None = None) -> Credentials:
        """A mounted OAuth2Client Secret: files client-id, client-secret, token-url,
        auth-method; for private_key_jwt also the client's key (`private-key`, or given)."""

        def read(name: str) -> str:
            try:
                return (directory / name).read_text().strip()
            except OSError:
                raise CredentialsError(
                    f"{directory / name} is missing: mount the client's Secret there"
                ) from None

        secret = directory / "client-secret"
        method = directory / "auth-method"
        key = directory / "private-key"  # e.g. projected next to the Secret's keys
        return cls(
            token_url=read("token-url"),
            client_id=read("client-id"),
            secret_file=secret if secret.exists() else None,
            auth_method=method.read_text().strip() if method.exists() else "client_secret_basic",
            private_key_file=private_key or (key if key.exists() else None),
        )

    @classmethod
    def from_projected_token(cls, path: Path, client_id: str, token_url: str) -> Credentials:
        return cls(token_url=token_url, client_id=client_id, projected_token_file=path)

    def authentication(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        """The client authentication part of a token request: form fields, Basic auth."""
        if self.projected_token_file is not None:
            return self._assertion(self._read(self.projected_token_file)), None
        if self.auth_method == "private_key_jwt":
            if self.private_key_file is None:
                raise CredentialsError(
                    "private_key_jwt needs the client's private key: put it in the credentials "
                    "directory as private-key, or pass --private-key"
                )
            try:
                signed = private_key_assertion(
                    self.client_id, self._read(self.private_key_file), self.token_url
                )
            except ValueError as exc:
                raise CredentialsError(f"{self.private_key_file}: {exc}") from None
            return self._assertion(signed), None
        if self.secret_file is None:
            raise CredentialsError("no client secret and no projected token configured")
        secret = self._read(self.secret_file)
        if self.auth_method == "client_secret_jwt":
            return self._assertion(secret_assertion(self.client_id, secret, self.token_url)), None
        if self.auth_method == "client_secret_post":
            return {"client_id": self.client_id, "client_secret": secret}, None
        # RFC 6749 §2.3.1: form-urlencode both parts inside the Basic credentials.
        return {}, (quote_plus(self.client_id), quote_plus(secret))

    def fingerprint(self) -> str:
        """A digest of what authenticates the client now (secret, projected token, key file),
        so a watcher notices when the kubelet has swapped in new content. A file that cannot be
        read counts as its own state, never as an error here."""
        digest = hashlib.sha256()
        for path in (self.secret_file, self.projected_token_file, self.private_key_file):
            if path is None:
                digest.update(b"\0none")
                continue
            try:
                digest.update(b"\0" + hashlib.sha256(path.read_bytes()).digest())
            except OSError:
                digest.update(b"\0unreadable")
        return digest.hexdigest()

    def _assertion(self, assertion: str) -> dict[str, str]:
        return {
            "client_id": self.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text().strip()
        except OSError:
            raise CredentialsError(f"cannot read {path}") from None
