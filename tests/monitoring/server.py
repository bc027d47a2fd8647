"""A real Prometheus for the tests: scrapes static targets every second and evaluates the
chart's alerting rules, on a free loopback port with its data in a temporary directory."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from kubemint.devcluster.controlplane import free_port
from kubemint.devcluster.processes import ManagedProcess
from kubemint.devcluster.prometheus import PrometheusBinaries


@dataclass
class Prometheus:
    url: str
    process: ManagedProcess
    http: httpx.Client

    def api(self, path: str, **params: str) -> Any:
        response = self.http.get(f"{self.url}/api/v1/{path}", params=params)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {response.status_code} {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (a vector's samples, or one scalar as a one-item list)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def selectors(self, expr: str) -> list[str]:
        """Every series selector in `expr` (range selectors as instant ones)."""
        return selectors(expr)

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")


# A kubemint metric name, then its label matchers if any (no rule puts a brace in a value).
_SELECTOR = re.compile(r"\b(kubemint_[a-z0-9_]+)(\{[^{}]*\})?")


def selectors(expr: str) -> list[str]:
    """The series selectors of `expr`: every kubemint metric it reads, with its matchers. Read
    from the text rather than Prometheus's /api/v1/parse_query, which Debian's 2.42 lacks; the
    rules read only kubemint's own series (a test checks the names are all declared)."""
    return [name + (matchers or "") for name, matchers in _SELECTOR.findall(expr)]


@contextmanager
def running_prometheus(
    binaries: PrometheusBinaries,
    workdir: Path,
    targets: Mapping[str, Sequence[str]],
    rule_files: Sequence[Path] = (),
    timeout: float = 60,
) -> Iterator[Prometheus]:
    """Prometheus scraping `targets` (job name → host:port, /metrics) every second."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            # honor_labels: the operator's per-object series carry their object's `namespace`.
            {"job_name": job, "honor_labels": True, "static_configs": [{"targets": list(hosts)}]}
            for job, hosts in targets.items()
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = ManagedProcess(
        "prometheus",
        [
            str(binaries.prometheus),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        workdir / "prometheus.log",
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=10) as http:
            deadline = time.monotonic() + timeout
            while True:
                if not process.alive():
                    raise AssertionError(f"prometheus exited:\n{process.log_tail()}")
                try:
                    if http.get(url + "/-/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"prometheus not ready:\n{process.log_tail()}")
                time.sleep(0.2)
            yield Prometheus(url, process, http)
    finally:
        process.stop()
