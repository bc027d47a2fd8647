"""Building the Node, Go and Java programs of an examples/ directory (examples/clients,
examples/verify) for the tests that run them as their own processes.

The three builds run in parallel, in the background while a test module sets up its cluster
objects, into a temporary directory (the work tree stays clean; the npm, Go and Maven caches
make later runs fast). A missing toolchain or a failed build fails the tests that need the
program: these programs are documentation that must keep working, so nothing skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

Builds = dict[str, Future[list[str]]]  # a program's name → its command line, once built


class BuildFailed(Exception):
    pass


@dataclass(frozen=True)
class Examples:
    """One examples/ directory and the names of what its programs build."""

    directory: Path  # with node/, go/ and java/ (and python/, run as it is)
    node_script: str  # in node/, next to package.json and package-lock.json
    go_binary: str  # the name `go build -o` gives the Go program
    java_jar: str  # what `mvn package` leaves in target/

    def build_node(self, out: Path) -> list[str]:
        self._toolchain("node", "npm")
        work = out / "node"
        work.mkdir()
        for name in ("package.json", "package-lock.json", self.node_script):
            shutil.copy(self.directory / "node" / name, work / name)
        self._build("node", ["npm", "ci", "--no-audit", "--no-fund"], work)
        return ["node", str(work / self.node_script)]

    def build_go(self, out: Path) -> list[str]:
        self._toolchain("go")
        binary = out / self.go_binary
        env = {"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly -buildvcs=false"}
        self._build("go", ["go", "build", "-o", str(binary), "."], self.directory / "go", env)
        return [str(binary)]

    def build_java(self, out: Path) -> list[str]:
        self._toolchain("java", "mvn")
        work = out / "java"
        work.mkdir()
        shutil.copy(self.directory / "java" / "pom.xml", work / "pom.xml")
        shutil.copytree(self.directory / "java" / "src", work / "src")
        self._build("java", ["mvn", "-q", "-B", "-Dstyle.color=never", "package"], work)
        return ["java", "-jar", str(work / "target" / self.java_jar)]

    def _toolchain(self, *tools: str) -> None:
        missing = [tool for tool in tools if shutil.which(tool) is None]
        if missing:
            raise BuildFailed(
                f"{' and '.join(missing)} not found on PATH: the programs in "
                f"examples/{self.directory.name} need node + npm, go, and java 17 + mvn to be "
                "built and run (install them; this test never skips)"
            )

    def _build(
        self, what: str, command: list[str], cwd: Path, env: dict[str, str] | None = None
    ) -> None:
        """Run one build step, raising with its whole output when it fails."""
        result = subprocess.run(
            command,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=800,
        )
        if result.returncode != 0:
            raise BuildFailed(
                f"building the {what} program of examples/{self.directory.name} failed: "
                f"`{' '.join(command)}` in {cwd} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )


@contextmanager
def building(examples: Examples, out: Path) -> Iterator[Builds]:
    """The command lines of the Node, Go and Java programs (as "node", "go", "java"), as
    futures: the builds run in the background while the caller sets up the rest."""
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="build") as pool:
        yield {
            "node": pool.submit(examples.build_node, out),
            "go": pool.submit(examples.build_go, out),
            "java": pool.submit(examples.build_java, out),
        }


def ready(command: list[str]) -> Future[list[str]]:
    """A program that needs no build (the Python ones), as a finished future."""
    future: Future[list[str]] = Future()
    future.set_result(command)
    return future


def command_line(builds: Builds, program: str) -> list[str]:
    """The program's command line once it is built; a failed build fails the test."""
    try:
        return builds[program].result()
    except BuildFailed as exc:
        failure = str(exc)
    pytest.fail(failure, pytrace=False)
