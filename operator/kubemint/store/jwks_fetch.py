"""One GET of a JWK Set from a URL a tenant wrote: bounded in time and size, never aimed inside.

A `jwksUri` comes from a tenant (`spec.federation.issuers[].jwksUri`) or an admin
(TrustedIssuer `spec.jwksUri`), and the token server fetches it from inside the cluster, so:
- Everything (DNS, connect, TLS, the response head, the body, every redirect) runs under one
  deadline: per-socket timeouts alone let a server that drips one byte at a time hold the
  fetch forever.
- The response is capped (head and body); it never reaches a log or an error: only the
  status code and a reason from this module's vocabulary do.
- The host is resolved here and the connection goes to the address that was checked (no
  second lookup a rebinding DNS server could answer differently). A name with any address
  that is loopback, link-local (169.254/16, fe80::/10: cloud metadata services),
  unspecified, multicast or reserved, or in the cluster's pod/service networks, is refused,
  unless an admin allow-listed that network.
- A redirect is followed only to the same host and port over https (the new connection is
  checked again), at most `max_redirects` times.

stdlib only (asyncio streams): the server image does not carry an HTTP client library, and
asyncio's cancellation is what makes the deadline total.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

from kubemint.api import addresses
from kubemint.api.addresses import Address, Network

MAX_HEAD = 32 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})

# Stable reasons (metric labels, log lines): why a fetch failed.
DEADLINE = "deadline"
ADDRESS = "address_refused"
REDIRECT = "redirect_refused"
STATUS = "http_status"
TOO_LARGE = "too_large"
INVALID = "invalid_response"
UNREACHABLE = "unreachable"  # DNS, connect or TLS failed
REASONS = (DEADLINE, ADDRESS, REDIRECT, STATUS, TOO_LARGE, INVALID, UNREACHABLE)


class FetchError(Exception):
    """A fetch that failed: `reason` is one of REASONS; the message names the URL's host and
    what was wrong, never anything the server sent beyond its status code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FetchPolicy:
    deadline: float = 5.0
    """Seconds for the whole fetch, redirects included."""
    max_bytes: int = 512 * 1024
    """Largest accepted JWK Set body."""
    max_redirects: int = 3
    cluster_networks: tuple[Network, ...] = ()
    """The cluster's pod and service networks (and any other internal range to refuse)."""
    allowed_networks: tuple[Network, ...] = ()
    """Networks an admin allows even though they would be refused (e.g. an in-cluster IdP)."""
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    """None: the system's CAs (SSL_CERT_FILE / SSL_CERT_DIR are honoured)."""


def refusal(address: Address, policy: FetchPolicy) -> str | None:
    """Why the token server must not connect to `address`, or None."""
    return addresses.refusal(address, policy.cluster_networks, policy.allowed_networks)


def literal_refusal(uri: str, policy: FetchPolicy) -> str | None:
    """For a URI whose host is an IP address: why it would be refused."""
    return addresses.literal_refusal(uri, policy.cluster_networks, policy.allowed_networks)


async def fetch_jwks(uri: str, policy: FetchPolicy) -> dict[str, Any]:
    """The JWK Set at `uri`, or FetchError."""
    try:
        async with asyncio.timeout(policy.deadline):
            body = await _follow(uri, policy)
    except TimeoutError:
        host = urlsplit(uri).hostname
        raise FetchError(
            DEADLINE, f"{host}: no complete answer within {policy.deadline:g}s"
        ) from None
    try:
        document = json.loads(body)
    except ValueError:
        raise FetchError(INVALID, f"{urlsplit(uri).hostname}: the body is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise FetchError(INVALID, f"{urlsplit(uri).hostname}: the body is not a JWK Set")
    return document


async def _follow(uri: str, policy: FetchPolicy) -> bytes:
    url = _https(uri)
    for _ in range(policy.max_redirects + 1):
        status, headers, reader, writer = await _request(url, policy)
        try:
            if status in REDIRECTS:
                url = _redirect(url, headers.get("location", ""))
                continue
            if status != 200:
                raise FetchError(STATUS, f"{url.hostname}: HTTP {status}")
            return await _body(reader, headers, policy, url)
        finally:
            writer.transport.abort()
    raise FetchError(REDIRECT, f"{url.hostname}: more than {policy.max_redirects} redirects")


def _https(uri: str) -> SplitResult:
    url = urlsplit(uri)
    if url.scheme != "https" or not url.hostname or url.username is not None:
        raise FetchError(INVALID, "the jwksUri must be an https URL without credentials")
    try:
        url.port  # noqa: B018 — raises for a port out of range
    except ValueError:
        raise FetchError(INVALID, "the jwksUri has an invalid port") from None
    return url


def _redirect(current: SplitResult, location: str) -> SplitResult:
    if not location:
        raise FetchError(INVALID, f"{current.hostname}: a redirect without a Location")
    target = urlsplit(urljoin(current.geturl(), location))
    same = (
        target.scheme == "https"
        and (target.hostname or "").lower() == (current.hostname or "").lower()
        and (target.port or 443) == (current.port or 443)
    )
    if not same:
        raise FetchError(
            REDIRECT, f"{current.hostname}: redirect to another host or scheme refused"
        )
    return _https(target.geturl())


async def _addresses(host: str, port: int, policy: FetchPolicy) -> list[str]:
    """The addresses to connect to, each checked; any refused one refuses the name (a name
    answering with both a public and an internal address is not one to trust)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise FetchError(UNREACHABLE, f"{host}: the name does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for text in addresses:
        why = refusal(ipaddress.ip_address(text.split("%", 1)[0]), policy)
        if why:
            raise FetchError(ADDRESS, f"{host}: {text} is {why}")
    return addresses


async def _request(
    url: SplitResult, policy: FetchPolicy
) -> tuple[int, dict[str, str], asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.hostname or "", url.port or 443
    context = policy.ssl_context or ssl.create_default_context()
    connection = None
    for address in await _addresses(host, port, policy):
        try:
            connection = await asyncio.open_connection(
                address, port, ssl=context, server_hostname=host, limit=MAX_HEAD
            )
            break
        except (OSError, ssl.SSLError):
            continue
    if connection is None:
        raise FetchError(UNREACHABLE, f"{host}: could not connect (TCP or TLS)")
    reader, writer = connection
    try:
        return await _exchange(url, host, reader, writer)
    except BaseException:  # a failure, or the deadline cancelling us: never leak the socket
        writer.transport.abort()
        raise


async def _exchange(
    url: SplitResult, host: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[int, dict[str, str], asyncio.StreamReader, asyncio.StreamWriter]:
    authority = f"[{host}]" if ":" in host else host
    if url.port and url.port != 443:
        authority += f":{url.port}"
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\n"
        "Accept: application/json, application/jwk-set+json\r\n"
        "User-Agent: kubemint-token-server\r\nConnection: close\r\n\r\n".encode("ascii")
    )
    try:
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise FetchError(INVALID, f"{host}: the response head is too large") from None
    except (OSError, asyncio.IncompleteReadError):
        raise FetchError(UNREACHABLE, f"{host}: the connection closed early") from None
    try:
        status, headers = _parse_head(head)
    except ValueError:
        raise FetchError(INVALID, f"{host}: not an HTTP response") from None
    return status, headers, reader, writer


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError("status line")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _body(
    reader: asyncio.StreamReader, headers: dict[str, str], policy: FetchPolicy, url: SplitResult
) -> bytes:
    limit = policy.max_bytes
    too_large = FetchError(TOO_LARGE, f"{url.hostname}: the body is larger than {limit} bytes")
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await _chunked(reader, limit, too_large)
        if "content-length" in headers:
            length = int(headers["content-length"])
            if length > limit:
                raise too_large
            return await reader.readexactly(length)
        body = await reader.read(limit + 1)  # no length: until the server closes
        while len(body) <= limit:
            more = await reader.read(limit + 1 - len(body))
            if not more:
                return body
            body += more
        raise too_large
    except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        raise FetchError(INVALID, f"{url.hostname}: the body is truncated or malformed") from None


async def _chunked(reader: asyncio.StreamReader, limit: int, too_large: FetchError) -> bytes:
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            return body
        if len(body) + size > limit:
            raise too_large
        body += await reader.readexactly(size)
        await reader.readexactly(2)
