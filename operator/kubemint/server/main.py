"""`kubemint token-server`: the cluster view plus the Starlette app under uvicorn."""

from __future__ import annotations

import logging
import math
import threading

import uvicorn
from kubernetes import client, config

from kubemint import logs
from kubemint.config import ServerSettings
from kubemint.oauth.assertions import LEEWAY
from kubemint.policy import expressions
from kubemint.policy.sandbox import Sandbox
from kubemint.server.app import create_app
from kubemint.server.connections import ConnectionLimits, guarded_protocol
from kubemint.server.metrics_listener import MetricsListener
from kubemint.server.shutdown import CloseWhileDraining, Drain, DrainingServer
from kubemint.server.tls import CertificateError, CertificateReloader
from kubemint.store.assertion_jtis import AssertionJtis, longest_remembered
from kubemint.store.issuers import IssuerKeys, kubernetes_fetch
from kubemint.store.jwks_fetch import FetchPolicy
from kubemint.store.revocations import RevocationStore
from kubemint.store.snapshot import Snapshot
from kubemint.store.view import ClusterView

log = logging.getLogger("kubemint.server")


def api_client(pool_size: int | None = None) -> client.ApiClient:
    configuration = client.Configuration()
    if pool_size is not None:
        configuration.connection_pool_maxsize = pool_size
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


def main() -> int:
    logs.configure()  # text or JSON lines; urllib3 quiet (the informers report outages)
    settings = ServerSettings.from_env()
    api = api_client()
    keys = IssuerKeys(
        refresh_every=settings.issuer_refresh,
        cooldown=settings.issuer_cooldown,
        policy=FetchPolicy(
            deadline=settings.issuer_fetch_timeout,
            max_bytes=settings.issuer_fetch_max_bytes,
            cluster_networks=settings.cluster_networks,
            allowed_networks=settings.issuer_fetch_allow,
        ),
        workers=settings.issuer_fetch_workers,
    )
    keys.set_cluster_source(kubernetes_fetch(api))

    def track_issuers(snapshot: Snapshot) -> None:
        keys.track(snapshot.jwks_uris(settings.jwks_uris_per_namespace))

    view = ClusterView(
        api,
        settings.namespace,
        on_snapshot=track_issuers,
        audience_ownership=settings.audience_ownership,
    )
    halt = threading.Event()
    # Tenants' CEL runs in worker processes with a deadline, never in this one (see sandbox).
    conditions = Sandbox(workers=settings.condition_workers, timeout=settings.condition_timeout)

    def start() -> None:
        conditions.start()
        expressions.install(conditions)
        threading.Thread(target=keys.run, args=(halt,), name="issuer-keys", daemon=True).start()
        threading.Thread(
            target=revocations.run_sweeper, args=(halt,), name="revocation-sweeper", daemon=True
        ).start()
        if jtis is not None:
            threading.Thread(
                target=jtis.run_sweeper, args=(halt,), name="jti-sweeper", daemon=True
            ).start()
        view.start()
        if not view.wait_synced(timeout=30):
            log.warning("the view is not synced yet; /readyz says so until it is")

    def stop() -> None:
        halt.set()
        view.stop()
        conditions.stop()

    jtis: AssertionJtis | None = None
    if settings.assertion_replay == "shared":
        jtis = AssertionJtis(
            # Its own client: claims run in the request threads (up to 40 at once), and a
            # connection the pool cannot keep is a new TLS handshake for the next claim.
            api_client(pool_size=40),
            settings.namespace,
            longest_remembered(settings.assertion_max_lifetime, LEEWAY),
            claims_per_minute=settings.assertion_claims_per_minute,
            namespace_claims_per_minute=settings.assertion_namespace_claims_per_minute,
        )
    revocations = RevocationStore(
        api, settings.namespace, view.revocations(), quota=settings.revocations_per_client
    )
    drain = Drain()
    app = create_app(
        settings,
        view,
        keys=keys,
        revocations=revocations,
        conditions=conditions,
        lifespan_hooks=(start, stop),
        drain=drain,
        jtis=jtis,
    )
    certificate = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        try:
            certificate = CertificateReloader(
                settings.tls_cert_file, settings.tls_key_file, app.state.metrics.registry
            )
        except CertificateError as exc:
            log.error("cannot serve HTTPS: %s", exc)
            return 1
        if settings.issuer.startswith("http://"):
            log.warning("serving HTTPS, but the issuer %s says http://", settings.issuer)
        threading.Thread(
            target=certificate.run,
            args=(halt, settings.tls_reload_interval),
            name="tls-reload",
            daemon=True,
        ).start()
    elif settings.issuer.startswith("https://"):
        log.info("serving plain HTTP: TLS is terminated in front of this server, or should be")
    metrics = None
    if settings.metrics_port:
        metrics = MetricsListener(app.state.metrics_app, settings.host, settings.metrics_port)
    log.info(
        "token server for issuer %s on %s://%s:%d, /metrics on %s",
        settings.issuer,
        "https" if certificate else "http",
        settings.host,
        settings.port,
        f"http://{settings.host}:{metrics.port}" if metrics else "no port (disabled)",
    )
    limits = ConnectionLimits(
        read_timeout=settings.read_timeout,
        max_header_bytes=settings.max_header_bytes,
        max_connections=settings.max_connections,
    )
    server = DrainingServer(
        uvicorn.Config(
            CloseWhileDraining(app, drain),
            host=settings.host,
            port=settings.port,
            http=guarded_protocol(limits),  # read deadline, header and connection caps
            log_level="warning",
            log_config=None,  # uvicorn's records go through kubemint.logs' handler and format
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
            # The listener's context follows certificate rotations (server.tls).
            ssl_context_factory=(lambda *_: certificate.listener) if certificate else None,
        ),
        drain,
        settings.shutdown_delay,
    )
    if metrics is not None:
        metrics.start()
    try:
        server.run()
    finally:
        halt.set()
        if metrics is not None:
            metrics.stop()
    return 0
