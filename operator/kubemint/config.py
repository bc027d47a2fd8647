"""Process settings, read from the environment once at start-up."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubemint.api.audiences import FIRST_CLAIM, check_mode

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs or addresses (e.g. "10.0.0.0/8, fd00::/8"); ValueError names
    the bad entry."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP network: {item!r}") from None
    return tuple(networks)


IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _default_namespace() -> str:
    try:
        return IN_CLUSTER_NAMESPACE.read_text().strip()
    except OSError:
        return "kubemint-system"


def _namespace_and_issuer(env: Mapping[str, str]) -> tuple[str, str]:
    """KUBEMINT_NAMESPACE (default: the pod's) and KUBEMINT_ISSUER (default: the in-cluster
    Service URL), shared by both processes so they always agree."""
    namespace = env.get("KUBEMINT_NAMESPACE") or _default_namespace()
    issuer = env.get("KUBEMINT_ISSUER") or f"https://kubemint-token-server.{namespace}.svc"
    return namespace, issuer.rstrip("/")


def _jwks_uris_per_namespace(env: Mapping[str, str]) -> int:
    """KUBEMINT_JWKS_URIS_PER_NAMESPACE, shared by both processes so the operator's status
    says what the token server fetches."""
    return max(0, int(env.get("KUBEMINT_JWKS_URIS_PER_NAMESPACE", "5")))


def _audience_ownership(env: Mapping[str, str]) -> str:
    """KUBEMINT_AUDIENCE_OWNERSHIP, shared by both processes so they decide alike."""
    return check_mode(env.get("KUBEMINT_AUDIENCE_OWNERSHIP") or FIRST_CLAIM)


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    """A positive integer from `name`; ValueError naming the variable otherwise."""
    value = _positive_number(env, name, default)
    if value != int(value):
        raise ValueError(f"{name} must be a positive integer, not {env.get(name)!r}")
    return int(value)


def _non_negative_number(env: Mapping[str, str], name: str, default: float) -> float:
    """A finite number ≥ 0 from `name`; ValueError naming the variable otherwise."""
    text = env.get(name) or str(default)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds ≥ 0, not {text!r}") from None
    if not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be a number of seconds ≥ 0, not {text!r}")
    return value


def _positive_number(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive, finite number from `name`; ValueError naming the variable otherwise."""
    text = env.get(name) or str(default)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a positive number, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a positive number, not {text!r}")
    return value


DEFAULT_SIGNING_KEY_ENV = "KUBEMINT_DEFAULT_SIGNING_KEY"


@dataclass(frozen=True)
class DefaultSigningKey:
    """The SigningKey the chart's `signingKey.*` values ask the operator to keep in its
    namespace, from KUBEMINT_DEFAULT_SIGNING_KEY (JSON the chart renders: name, spec, owner).

    The chart cannot create it itself: its CRDs are templates of the same release (so they
    upgrade with it), and helm maps every object of a release before creating any."""

    name: str
    spec: Mapping[str, Any]
    owner: str = ""
    """A Deployment in the namespace (the operator's) whose deletion deletes the key, for
    `signingKey.keep: false`; empty keeps the key when the release is uninstalled."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DefaultSigningKey | None:
        text = env.get(DEFAULT_SIGNING_KEY_ENV, "").strip()
        if not text:
            return None
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{DEFAULT_SIGNING_KEY_ENV} is not JSON: {exc}") from None
        if not isinstance(raw, dict) or set(raw) - {"name", "spec", "owner"}:
            raise ValueError(f"{DEFAULT_SIGNING_KEY_ENV} must be an object of name, spec, owner")
        name, spec, owner = raw.get("name"), raw.get("spec"), raw.get("owner", "")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{DEFAULT_SIGNING_KEY_ENV}.name must be a non-empty string")
        if not isinstance(spec, dict):
            raise ValueError(f"{DEFAULT_SIGNING_KEY_ENV}.spec must be an object")
        if not isinstance(owner, str):
            raise ValueError(f"{DEFAULT_SIGNING_KEY_ENV}.owner must be a string")
        return cls(name=name, spec=spec, owner=owner)


def _tls_files(env: Mapping[str, str]) -> tuple[Path | None, Path | None]:
    """KUBEMINT_TLS_CERT_FILE and KUBEMINT_TLS_KEY_FILE: both (HTTPS) or neither (HTTP)."""
    cert, key = env.get("KUBEMINT_TLS_CERT_FILE", ""), env.get("KUBEMINT_TLS_KEY_FILE", "")
    if bool(cert) != bool(key):
        missing = "KUBEMINT_TLS_KEY_FILE" if cert else "KUBEMINT_TLS_CERT_FILE"
        raise ValueError(f"{missing} must be set too: HTTPS needs both a certificate and its key")
    return (Path(cert) if cert else None), (Path(key) if key else None)


ASSERTION_REPLAY_MODES = ("shared", "replica")
LONGEST_ASSERTION = 86400.0


def _assertion_lifetime(env: Mapping[str, str]) -> float:
    name = "KUBEMINT_ASSERTION_MAX_LIFETIME"
    value = _positive_number(env, name, 3600.0)
    if value > LONGEST_ASSERTION:
        raise ValueError(f"{name} must be at most {LONGEST_ASSERTION:.0f} seconds")
    return value


def _assertion_replay(env: Mapping[str, str]) -> str:
    mode = env.get("KUBEMINT_ASSERTION_REPLAY") or "shared"
    if mode not in ASSERTION_REPLAY_MODES:
        raise ValueError(f"KUBEMINT_ASSERTION_REPLAY must be shared or replica, not {mode!r}")
    return mode


@dataclass(frozen=True)
class OperatorSettings:
    namespace: str
    """The token server's namespace: SigningKeys and verification records live here."""
    issuer: str
    """The token issuer URL written into client Secrets (`issuer`)."""
    token_url: str
    """The token endpoint written into client Secrets (`token-url`)."""
    recheck_interval: float = 30.0
    """Seconds between re-checks of objects with something pending (rotation, missing refs)."""
    leader_election: bool = True
    """Run only while holding the Lease, so replicas never act at the same time."""
    lease_name: str = "kubemint-operator"
    identity: str = ""
    """This replica's name in the Lease (pod name plus a random suffix)."""
    workers: int = 16
    """Threads for Kubernetes API calls (the official client is synchronous)."""
    audience_ownership: str = "firstClaim"
    """How a namespace comes to own an audience: `firstClaim` (its rule claims it first) or
    `assigned` (only a cluster admin's assignment record makes an owner)."""
    key_workers: int = 2
    """Threads that generate and read signing keys, off the event loop (cryptography releases
    the GIL there); at most this many keys are made at once, however many SigningKeys ask."""
    manual_rotation_interval: float = 60.0
    """Seconds a SigningKey waits after a manual rotation (kubemint.io/rotate) before the
    next one is done; a request made sooner is deferred until then, never dropped."""
    jwks_uris_per_namespace: int = 5
    """As the token server's: accounts whose jwksUri is over the limit are not Ready."""
    cluster_networks: tuple[Network, ...] = ()
    """As the token server's: an account whose jwksUri is an IP there is not Ready."""
    issuer_fetch_allow: tuple[Network, ...] = ()
    """As the token server's: exceptions to the refused addresses."""
    default_signing_key: DefaultSigningKey | None = None
    """The chart's SigningKey, applied by the leader (None: the chart's signingKey.create is
    false, or not run by the chart)."""
    probe_host: str = "0.0.0.0"  # noqa: S104 — probed by the kubelet and scraped from outside the pod
    """Where the metrics and liveness ports listen."""
    metrics_port: int = 0
    """Port of /metrics (served from a thread); 0: not served. The chart sets 8080."""
    liveness_port: int = 0
    """Port of kopf's liveness endpoint /healthz (served on the event loop, so a wedged loop
    stops answering); 0: not served. The chart sets 8081."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OperatorSettings:
        namespace, issuer = _namespace_and_issuer(env)
        return cls(
            namespace=namespace,
            issuer=issuer,
            token_url=env.get("KUBEMINT_TOKEN_URL") or issuer + "/oauth2/token",
            recheck_interval=float(env.get("KUBEMINT_RECHECK_INTERVAL", "30")),
            leader_election=env.get("KUBEMINT_LEADER_ELECTION", "true").lower() != "false",
            lease_name=env.get("KUBEMINT_LEASE_NAME", "kubemint-operator"),
            identity=env.get("POD_NAME", socket.gethostname()) + "-" + uuid.uuid4().hex[:6],
            workers=int(env.get("KUBEMINT_API_WORKERS", "16")),
            audience_ownership=_audience_ownership(env),
            key_workers=max(1, int(env.get("KUBEMINT_KEY_WORKERS", "2"))),
            manual_rotation_interval=float(env.get("KUBEMINT_MANUAL_ROTATION_INTERVAL", "60")),
            jwks_uris_per_namespace=_jwks_uris_per_namespace(env),
            cluster_networks=parse_networks(env.get("KUBEMINT_CLUSTER_NETWORKS", "")),
            issuer_fetch_allow=parse_networks(env.get("KUBEMINT_ISSUER_FETCH_ALLOW", "")),
            default_signing_key=DefaultSigningKey.from_env(env),
            probe_host=env.get("KUBEMINT_PROBE_HOST", "0.0.0.0"),  # noqa: S104
            metrics_port=_port(env, "KUBEMINT_METRICS_PORT"),
            liveness_port=_port(env, "KUBEMINT_LIVENESS_PORT"),
        )


def _port(env: Mapping[str, str], name: str) -> int:
    """A TCP port from `name` (0 or unset: off); ValueError naming the variable otherwise."""
    text = env.get(name) or "0"
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"{name} must be a port number (0 for none), not {text!r}")
    return int(text)


@dataclass(frozen=True)
class ServerSettings:
    namespace: str
    """Where SigningKeys and verification records live; the only namespace whose Secrets the
    token server reads."""
    issuer: str
    """The `iss` of issued tokens and the base of every advertised endpoint."""
    host: str = "0.0.0.0"  # noqa: S104 — a server in a pod listens on all interfaces
    port: int = 8080
    max_body: int = 64 * 1024
    """Largest accepted request body in bytes; larger ones get 413 before parsing."""
    stale_after: float = 60.0
    """Seconds without a live watch after which /readyz reports the view as stale."""
    failures_per_client: int = 10
    """Failed client authentications allowed per client id per minute."""
    failures_per_source: int = 100
    """Failed client authentications allowed per source address per minute (higher: many
    clients may share one address behind a proxy or node)."""
    trusted_proxies: tuple[Network, ...] = ()
    """Proxies (e.g. the ingress controllers' pod network) whose X-Forwarded-For names the
    source address; empty: X-Forwarded-For is ignored."""
    audience_ownership: str = "firstClaim"
    """As the operator's: the token server decides ownership with the same rule."""

    assertion_max_lifetime: float = 3600.0
    """Longest client assertion (RFC 7523 `exp` - `iat`) accepted, in seconds: authlib's
    default and the bound common providers document. Each `jti` is remembered that long."""
    assertion_replay: str = "shared"
    """`shared`: the first use of each client assertion is claimed in the server namespace
    (kubemint.store.assertion_jtis), so a replay is refused on every replica; `replica`:
    each replica remembers only what it accepted (one replica, or no API writes wanted)."""
    assertion_claims_per_minute: int = 60
    """Client assertions one client may have claimed in the shared store per minute on each
    replica (each is one small ConfigMap until it expires); past that 429 slow_down for that
    client only."""
    assertion_namespace_claims_per_minute: int = 120
    """Client assertions all clients of one namespace together may have claimed in the shared
    store per minute on each replica; past that 429 slow_down for that namespace's clients
    only. This bounds a tenant's records whatever number of clients it creates (the bound is
    in kubemint.store.assertion_jtis)."""

    revocations_per_client: int = 100
    """Live revocation entries one client may hold; past that its revocations move its
    watermark (its tokens issued until then are all revoked) instead of adding entries."""
    revocation_writes_per_minute: int = 60
    """Revocation-store writes one client may cause per minute on each replica; past that
    its revocations get 429 slow_down with Retry-After (other clients are not affected)."""

    condition_workers: int = 2
    """Worker processes that evaluate CEL conditions (AccessRule and issuer `when`)."""
    condition_timeout: float = 0.1
    """Seconds one condition may take; a later one is cut off, refused for a while, and the
    request gets temporarily_unavailable."""

    jwks_uris_per_namespace: int = 5
    """Distinct `spec.federation.issuers[].jwksUri`s fetched per namespace (oldest accounts
    first); the operator reports accounts over the limit (`TooManyJwksUris`)."""
    issuer_fetch_timeout: float = 5.0
    """Seconds one jwksUri fetch may take in all (DNS, connect, TLS, response, redirects)."""
    issuer_fetch_max_bytes: int = 512 * 1024
    """Largest JWK Set accepted from a jwksUri."""
    issuer_fetch_workers: int = 16
    """jwksUri fetches at once; sources that keep failing may hold at most half."""
    issuer_refresh: float = 300.0
    """Seconds between refreshes of each issuer's keys (the cluster's included)."""
    issuer_cooldown: float = 10.0
    """Least seconds between two fetches of one source when tokens name unknown keys; also
    the first retry delay after a failure (doubling up to issuer_refresh)."""
    cluster_networks: tuple[Network, ...] = ()
    """The cluster's pod and service CIDRs (and other internal ranges): a jwksUri resolving
    there is refused, as loopback, link-local and unspecified addresses always are."""
    issuer_fetch_allow: tuple[Network, ...] = ()
    """Networks a jwksUri may reach although they would be refused (an admin's in-cluster
    identity provider, a test's loopback server)."""
    read_timeout: float = 10.0
    """Seconds a client has to send a whole request (headers and body) from its first byte;
    missed: 408 (or the connection closed, mid-body). Idle keep-alive is uvicorn's 5 s."""
    max_header_bytes: int = 32 * 1024
    """Largest request target plus headers in bytes; larger requests get 431."""
    max_connections: int = 1024
    """Open connections at once; one beyond gets 503 temporarily_unavailable and is closed."""
    shutdown_delay: float = 0.0
    """Seconds between SIGTERM and closing the listener, during which /readyz answers 503
    and requests are still served (with `Connection: close`): the Service's endpoints and
    every node's kube-proxy need a moment to stop sending new connections to a pod that is
    going away. The chart sets 5."""
    shutdown_timeout: float = 20.0
    """Seconds the requests still in flight when the listener closes may take to finish."""
    tls_cert_file: Path | None = None
    """PEM certificate (chain) to serve HTTPS with, e.g. a mounted Secret's tls.crt; None:
    plain HTTP. Set together with tls_key_file."""
    tls_key_file: Path | None = None
    """The unencrypted PEM private key of tls_cert_file (tls.key)."""
    tls_reload_interval: float = 10.0
    """Seconds between checks of the certificate files for a rotation (server.tls)."""
    metrics_port: int = 9090
    """Port of the plain-HTTP listener serving /metrics only (never the main port, which an
    Ingress may publish); 0 disables it."""

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/oauth2/token"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServerSettings:
        namespace, issuer = _namespace_and_issuer(env)
        cert_file, key_file = _tls_files(env)
        return cls(
            namespace=namespace,
            issuer=issuer,
            host=env.get("KUBEMINT_HOST", "0.0.0.0"),  # noqa: S104
            port=int(env.get("KUBEMINT_PORT", "8080")),
            max_body=int(env.get("KUBEMINT_MAX_BODY", str(64 * 1024))),
            stale_after=float(env.get("KUBEMINT_STALE_AFTER", "60")),
            failures_per_client=int(env.get("KUBEMINT_AUTH_FAILURES_PER_CLIENT", "10")),
            failures_per_source=int(env.get("KUBEMINT_AUTH_FAILURES_PER_SOURCE", "100")),
            trusted_proxies=parse_networks(env.get("KUBEMINT_TRUSTED_PROXIES", "")),
            audience_ownership=_audience_ownership(env),
            assertion_max_lifetime=_assertion_lifetime(env),
            assertion_replay=_assertion_replay(env),
            assertion_claims_per_minute=_positive(env, "KUBEMINT_ASSERTION_CLAIMS_PER_MINUTE", 60),
            assertion_namespace_claims_per_minute=_positive(
                env, "KUBEMINT_ASSERTION_NAMESPACE_CLAIMS_PER_MINUTE", 120
            ),
            revocations_per_client=_positive(env, "KUBEMINT_REVOCATIONS_PER_CLIENT", 100),
            revocation_writes_per_minute=_positive(
                env, "KUBEMINT_REVOCATION_WRITES_PER_MINUTE", 60
            ),
            condition_workers=int(env.get("KUBEMINT_CONDITION_WORKERS", "2")),
            condition_timeout=float(env.get("KUBEMINT_CONDITION_TIMEOUT", "0.1")),
            jwks_uris_per_namespace=_jwks_uris_per_namespace(env),
            issuer_fetch_timeout=_positive_number(env, "KUBEMINT_ISSUER_FETCH_TIMEOUT", 5.0),
            issuer_fetch_max_bytes=_positive(env, "KUBEMINT_ISSUER_FETCH_MAX_BYTES", 524288),
            issuer_fetch_workers=_positive(env, "KUBEMINT_ISSUER_FETCH_WORKERS", 16),
            issuer_refresh=_positive_number(env, "KUBEMINT_ISSUER_REFRESH", 300.0),
            issuer_cooldown=_positive_number(env, "KUBEMINT_ISSUER_COOLDOWN", 10.0),
            cluster_networks=parse_networks(env.get("KUBEMINT_CLUSTER_NETWORKS", "")),
            issuer_fetch_allow=parse_networks(env.get("KUBEMINT_ISSUER_FETCH_ALLOW", "")),
            read_timeout=_positive_number(env, "KUBEMINT_REQUEST_READ_TIMEOUT", 10.0),
            max_header_bytes=_positive(env, "KUBEMINT_MAX_HEADER_BYTES", 32 * 1024),
            max_connections=_positive(env, "KUBEMINT_MAX_CONNECTIONS", 1024),
            shutdown_delay=_non_negative_number(env, "KUBEMINT_SHUTDOWN_DELAY", 0.0),
            shutdown_timeout=_positive_number(env, "KUBEMINT_SHUTDOWN_TIMEOUT", 20.0),
            tls_cert_file=cert_file,
            tls_key_file=key_file,
            tls_reload_interval=_positive_number(env, "KUBEMINT_TLS_RELOAD_INTERVAL", 10.0),
            metrics_port=int(env.get("KUBEMINT_METRICS_PORT", "9090")),
        )
