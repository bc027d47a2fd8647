"""OAuth 2.0 wire errors (RFC 6749 §5.2, RFC 7009 §2.2.1, RFC 8693 §2.2.2, RFC 8707 §2).

Each error is a class carrying its `error` code and HTTP status; one exception handler in the
web layer renders all of them. Descriptions are written for the caller and never contain a
secret, a token, or which part of a credential was wrong; `reason` says that for the audit
log only (what an operator needs to fix a client; still never a secret).
"""

from __future__ import annotations

from typing import ClassVar


class OAuth2Error(Exception):
    error: ClassVar[str] = "invalid_request"
    status_code: ClassVar[int] = 400

    def __init__(
        self, description: str = "", *, retry_after: int | None = None, reason: str = ""
    ) -> None:
        super().__init__(description)
        self.description = description
        self.retry_after = retry_after
        self.reason = reason or description

    def body(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body

    def headers(self) -> dict[str, str]:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class InvalidRequest(OAuth2Error):
    error = "invalid_request"


class InvalidClient(OAuth2Error):
    """Client authentication failed (RFC 6749 §5.2): 401 with a WWW-Authenticate challenge."""

    error = "invalid_client"
    status_code = 401

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": 'Basic realm="kubemint"'}


class InvalidGrant(OAuth2Error):
    error = "invalid_grant"


class UnauthorizedClient(OAuth2Error):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuth2Error):
    error = "unsupported_grant_type"


class InvalidScope(OAuth2Error):
    error = "invalid_scope"


class InvalidTarget(OAuth2Error):
    """RFC 8707 §2: the requested resource/audience is not acceptable."""

    error = "invalid_target"


class AccessDenied(OAuth2Error):
    error = "access_denied"
    status_code = 403


class UnsupportedTokenType(OAuth2Error):
    """RFC 7009 §2.2.1."""

    error = "unsupported_token_type"


class TooManyRequests(OAuth2Error):
    """Failed authentication rate limit; not an RFC 6749 code, but the one servers use."""

    error = "slow_down"
    status_code = 429


class ClaimsOverBudget(TooManyRequests):
    """A verified client assertion over the shared jti store's budget (per client or per
    namespace: `budget`, kubemint.store.assertion_jtis); not burnt, it may be sent again."""

    def __init__(
        self, description: str, *, retry_after: int, budget: str, reason: str = ""
    ) -> None:
        super().__init__(description, retry_after=retry_after, reason=reason)
        self.budget = budget


class ServerError(OAuth2Error):
    """Anything unexpected: rendered without details (the log has them)."""

    error = "server_error"
    status_code = 500


class TemporarilyUnavailable(OAuth2Error):
    error = "temporarily_unavailable"
    status_code = 503
