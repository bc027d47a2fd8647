"""`kubemint token-server`: the cluster view plus the Starlette app under uvicorn."""

from __future__ import annotations

import logging

import uvicorn
from kubernetes import client, config

from kubemint.config import ServerSettings
from kubemint.server.app import create_app
from kubemint.store.view import ClusterView

log = logging.getLogger("kubemint.server")


def api_client() -> client.ApiClient:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = ServerSettings.from_env()
    api = api_client()
    view = ClusterView(api, settings.namespace)

    def start() -> None:
        view.start()
        if not view.wait_synced(timeout=30):
            log.warning("the view is not synced yet; /readyz says so until it is")

    app = create_app(settings, view, lifespan_hooks=(start, view.stop))
    log.info("token server for issuer %s on %s:%d", settings.issuer, settings.host, settings.port)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )
    return 0
