"""The request a proxy asks about, read from each proxy's forward-auth conventions.

nginx `auth_request` (and ingress-nginx `auth-url`), Traefik `forwardAuth` and Envoy HTTP
`ext_authz` each describe the original request differently; all three end up here as one
`OriginalRequest` with a canonical host and path, so rules match what the upstream serves.

Paths are matched after percent-decoding and dot-segment removal, and a path whose meaning
depends on who decodes it (an encoded "/" or "\\", a NUL or other control character, a dot
segment, a `#`, a `;parameter` that servlet containers strip, as in `..;/`) is refused
outright: otherwise `/public/..%2Fadmin` or `/public/..;/admin` could be judged by the
`/public` rule while the upstream serves `/admin`.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_HOST = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_IPV6 = re.compile(r"^\[[0-9a-f:.]+\]$")
_AMBIGUOUS = re.compile(r"%(2f|5c|00)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FRAGMENT = "the request path holds a # (a fragment is never part of a request)"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 method token


class BadRequest(ValueError):
    """The proxy's description of the request is missing or unusable (answered with 400)."""


@dataclass(frozen=True)
class OriginalRequest:
    method: str  # upper case
    host: str  # lower case, without port or trailing dot
    path: str  # decoded, no dot segments, no empty segments, no query

    def __str__(self) -> str:
        return f"{self.method} {self.host}{self.path}"


def canonical_path(raw: str) -> str:
    """The path of a request target (`/a/b?q`), decoded and normalised, or BadRequest."""
    path = raw.split("?", 1)[0]
    if "#" in path:  # a judge that drops `#...` sees /public where `/public#/../admin` is sent
        raise BadRequest(FRAGMENT)
    if not path.startswith("/"):
        raise BadRequest("the request path must start with /")
    if _AMBIGUOUS.search(path):
        raise BadRequest("the request path holds an encoded /, \\ or NUL")
    try:
        decoded = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("the request path is not UTF-8 once decoded") from None
    if "\\" in decoded or "\x00" in decoded:
        raise BadRequest("the request path holds \\ or NUL")
    if _CONTROL.search(decoded):
        raise BadRequest("the request path holds a control character")
    segments = [s for s in decoded.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise BadRequest("the request path holds a . or .. segment")
    # Servlet containers (Tomcat, Jetty, Spring) strip `;parameters` from each segment
    # before routing: `..;/` climbs like `../`, and `/admin;x` is served as `/admin`.
    if any(s.split(";", 1)[0] in (".", "..") for s in segments):
        raise BadRequest("the request path holds a . or .. segment with a ;parameter")
    if ";" in decoded:
        raise BadRequest("the request path holds a ;parameter (servlet containers drop it)")
    return "/" + "/".join(segments)


def canonical_host(raw: str) -> str:
    """Lower case, without port or trailing dot; an IPv6 literal keeps its brackets."""
    host = raw.strip().lower()
    if host.startswith("["):
        literal = host[: host.find("]") + 1]
        if not _IPV6.match(literal):
            raise BadRequest("the request host is not a valid IPv6 literal")
        return literal
    host = host.split(":", 1)[0].rstrip(".")
    if not _HOST.match(host):
        raise BadRequest("the request host is not a valid host name")
    return host


def canonical_method(raw: str) -> str:
    method = raw.strip().upper()
    if not _TOKEN.match(method):
        raise BadRequest("the request method is not a valid HTTP method")
    return method


def from_traefik(headers: Mapping[str, str]) -> OriginalRequest:
    """Traefik forwardAuth: X-Forwarded-Method, X-Forwarded-Host and X-Forwarded-Uri."""
    return OriginalRequest(
        canonical_method(_required(headers, "x-forwarded-method")),
        canonical_host(_required(headers, "x-forwarded-host")),
        canonical_path(_required(headers, "x-forwarded-uri")),
    )


def from_nginx(headers: Mapping[str, str]) -> OriginalRequest:
    """nginx auth_request: ingress-nginx sends X-Original-URL and X-Original-Method; a plain
    nginx location may instead set X-Original-URI with X-Forwarded-Host (or Host).

    The auth subrequest carries every header the client sent, so a proxy sets one of the two
    and a client may have sent the other: both present is refused, never resolved in favour
    of one (a client's X-Original-URL must not describe a request it is not making)."""
    method = canonical_method(_required(headers, "x-original-method"))
    url = headers.get("x-original-url")
    if url and headers.get("x-original-uri"):
        raise BadRequest("both X-Original-URL and X-Original-URI: the proxy must set exactly one")
    if url:
        if "#" in url:  # urlsplit would drop the fragment, and with it `#/../admin`
            raise BadRequest(FRAGMENT)
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError:  # e.g. a malformed [IPv6] host
            raise BadRequest("X-Original-URL is not a valid URL") from None
        if not parts.netloc:
            raise BadRequest("X-Original-URL must be an absolute URL")
        target = parts.path or "/"
        return OriginalRequest(method, canonical_host(parts.netloc), canonical_path(target))
    uri = headers.get("x-original-uri")
    host = headers.get("x-forwarded-host") or headers.get("host")
    if not uri or not host:
        raise BadRequest("X-Original-URL (or X-Original-URI with X-Forwarded-Host) is required")
    return OriginalRequest(method, canonical_host(host), canonical_path(uri))


def from_envoy(
    method: str, raw_path: str, prefix: str, headers: Mapping[str, str]
) -> OriginalRequest:
    """Envoy HTTP ext_authz: the check request repeats the original method and path after
    the configured path_prefix; the host is the original authority."""
    if not raw_path.startswith(prefix):
        raise BadRequest(f"the check request path must start with {prefix}")
    target = raw_path[len(prefix) :] or "/"
    host = headers.get("x-forwarded-host") or headers.get("host")
    if not host:
        raise BadRequest("the Host header is required")
    return OriginalRequest(canonical_method(method), canonical_host(host), canonical_path(target))


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        title = "-".join(part.capitalize() for part in name.split("-"))
        raise BadRequest(f"the {title} header is required")
    return value
