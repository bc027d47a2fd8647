"""A cached access token that renews itself before it expires, and an httpx Auth using it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx

from kubemint.client.credentials import Credentials


class TokenError(RuntimeError):
    """The token endpoint refused; carries its OAuth error code (never a secret)."""

    def __init__(self, error: str, description: str = "", status: int = 0) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.status = status


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float
    refresh_at: float


class TokenSource:
    """client_credentials tokens from `credentials`, renewed when 80% of their life is gone
    (at least `min_margin` seconds before expiry)."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        scope: str | None = None,
        audience: str | None = None,
        http: httpx.Client | None = None,
        min_margin: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.scope = scope
        self.audience = audience
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=10)
        self.min_margin = min_margin
        self.clock = clock
        self._token: Token | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> TokenSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def token(self, force: bool = False) -> str:
        with self._lock:
            if force or self._token is None or self.clock() >= self._token.refresh_at:
                self._token = self._fetch()
            return self._token.value

    @property
    def refresh_at(self) -> float:
        return self._token.refresh_at if self._token else self.clock()

    def _post(self) -> httpx.Response:
        fields, basic = self.credentials.authentication()
        form = {"grant_type": "client_credentials", **fields}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        auth = httpx.BasicAuth(*basic) if basic else httpx.USE_CLIENT_DEFAULT
        return self.http.post(self.credentials.token_url, data=form, auth=auth)

    def _fetch(self) -> Token:
        started = self.clock()
        try:
            response = self._post()
        except (httpx.NetworkError, httpx.RemoteProtocolError):
            # A token request is safe to repeat, and the usual cause is a kept-alive
            # connection that a token-server pod closed as it shut down (a rolling upgrade):
            # once more, on a new connection, with a fresh assertion (a jti is single-use).
            # Timeouts are not repeated: they would double the wait.
            response = self._post()
        try:
            body = response.json()
        except ValueError:
            raise TokenError(
                "invalid_response", f"HTTP {response.status_code}", response.status_code
            ) from None
        if response.status_code != 200 or "access_token" not in body:
            raise TokenError(
                str(body.get("error", "invalid_response")),
                str(body.get("error_description", "")),
                response.status_code,
            )
        lifetime = float(body.get("expires_in", 300))
        margin = max(self.min_margin, lifetime * 0.2)
        return Token(body["access_token"], started + lifetime, started + max(0, lifetime - margin))


class KubemintAuth(httpx.Auth):
    """`httpx.Client(auth=KubemintAuth(source))`: Bearer tokens, renewed once on a 401."""

    def __init__(self, source: TokenSource) -> None:
        self.source = source

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.source.token()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.source.token(force=True)}"
            yield request
