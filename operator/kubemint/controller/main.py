"""`kubemint operator`: kopf with kubemint's handlers, the drift watcher, and leader election."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any, cast

import kopf
from kopf._core.engines.peering import Identity
from kopf._core.engines.probing import health_reporter
from kubernetes import client

from kubemint import logs
from kubemint.config import OperatorSettings
from kubemint.controller import kube, toggles
from kubemint.controller.drift import DriftWatcher
from kubemint.controller.kube import Kube
from kubemint.controller.leader import (
    LeaderElector,
    LeadershipLost,
    LeaseSettings,
    run_as_leader,
)
from kubemint.controller.memory import release_memory
from kubemint.controller.runtime import Runtime
from kubemint.controller.setup import build_registry

log = logging.getLogger("kubemint.operator")


async def run_operator(settings: OperatorSettings) -> None:
    toggles.install()  # before kopf builds its toggle sets: a start must not cost N² wake-ups
    runtime = Runtime(settings, Kube.connect(settings.workers))
    registry = build_registry(runtime)
    metrics = runtime.observer.metrics
    if settings.metrics_port:
        metrics.serve(settings.probe_host, settings.metrics_port)
        log.info("serving /metrics on %s:%d", settings.probe_host, settings.metrics_port)

    async def work(stop: asyncio.Event) -> None:
        metrics.leader.set(1)
        try:
            await asyncio.gather(
                kopf.operator(
                    registry=registry,
                    clusterwide=True,
                    standalone=True,
                    stop_flag=stop,
                    # kopf's default identity calls getpass.getuser(), which raises KeyError
                    # for a uid without a passwd entry: the image's 65532 (the chart's
                    # runAsUser).
                    identity=Identity(settings.identity),
                ),
                DriftWatcher(runtime).run(stop),
            )
        finally:
            metrics.leader.set(0)
            runtime.observer.clear()  # a standby reports no objects: the leader does

    liveness = None
    if settings.liveness_port:
        # kopf's own liveness endpoint, run for the whole process rather than inside
        # kopf.operator (which runs only while this replica leads): a standby must answer
        # too. It answers on the event loop, so a wedged loop fails the probe.
        endpoint = f"http://{settings.probe_host}:{settings.liveness_port}/healthz"
        liveness = asyncio.create_task(
            health_reporter(
                endpoint,
                memo=cast(Any, kopf.Memo()),
                indices={},
                registry=registry,
                settings=kopf.OperatorSettings(),
            ),
            name="liveness",
        )
    try:
        if settings.leader_election:
            await lead(settings, work)
        else:
            await work(asyncio.Event())
    finally:
        if liveness is not None:
            liveness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await liveness
        runtime.close()


Work = Callable[[asyncio.Event], Awaitable[None]]


async def lead(settings: OperatorSettings, work: Work) -> None:
    """Run `work` whenever this replica holds the lease, until it returns."""
    # The elector's own connection: its renewals must never queue behind the operator's calls.
    api_client = kube.connect(2)
    elector = LeaderElector(
        client.CoordinationV1Api(api_client),
        LeaseSettings(settings.lease_name, settings.namespace, settings.identity),
    )
    where = f"{settings.namespace}/{settings.lease_name}"
    try:
        while True:
            log.info("waiting for lease %s as %s", where, settings.identity)
            try:
                await run_as_leader(elector, work)
                return
            except LeadershipLost as exc:
                # Stepped down (e.g. the API server was away longer than the renew
                # deadline): stand by and compete for the lease again, without the last
                # term's memory (see kubemint.controller.memory).
                log.warning("%s; standing by", exc)
                release_memory()
    finally:
        api_client.close()  # type: ignore[no-untyped-call]


def main() -> int:
    logs.configure()
    settings = OperatorSettings.from_env()

    async def supervised() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run_operator(settings)

    asyncio.run(supervised())
    return 0
