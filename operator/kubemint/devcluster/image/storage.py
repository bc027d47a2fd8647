"""buildah on a private containers-storage under the cache, never the machine's own.

Every buildah command runs with its own storage.conf, containers.conf and registries.conf (no
registry to search), TMPDIR under the cache, and in a private mount namespace: the overlay
mounts buildah makes vanish with the command, and an overlay over /var/lib catches what
containers/image insists on writing there (its blob-info cache), so nothing is written outside
the cache directory. The run root is new for each command: no mount outlives it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kubemint.devcluster.image.tools import ImageError

# PID 1 of `unshare`: an overlay over /var/lib (writes land in a throwaway upper directory),
# then the command. `mount -n`: no /run/mount/utab entry.
_PRIVATE = (
    'mount -n -t overlay overlay -o "lowerdir=/var/lib,upperdir=$1/upper,workdir=$1/work" /var/lib'
    ' && shift && exec "$@"'
)


class Storage:
    """A containers-storage (overlay driver) at `root`, and buildah commands against it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.graph = root / "graph"
        self._tmp = root / "tmp"

    def _configs(self, run_root: Path) -> dict[str, str]:
        files = {
            "storage.conf": (
                f'[storage]\ndriver = "overlay"\ngraphroot = "{self.graph}"\n'
                f'runroot = "{run_root}"\n'
            ),
            "containers.conf": (
                f'[engine]\nimage_copy_tmp_dir = "{run_root / "tmp"}"\n'
                f'[network]\nnetwork_config_dir = "{self.root / "net"}"\n'
            ),
            "registries.conf": "unqualified-search-registries = []\n",
        }
        paths = {}
        for name, text in files.items():
            path = run_root / name
            path.write_text(text)
            paths[name] = str(path)
        return {
            "CONTAINERS_STORAGE_CONF": paths["storage.conf"],
            "CONTAINERS_CONF": paths["containers.conf"],
            "CONTAINERS_REGISTRIES_CONF": paths["registries.conf"],
            "TMPDIR": str(run_root / "tmp"),
        }

    def buildah(
        self, *args: str, timeout: float = 1800, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`buildah ARGS…` on this storage; raises ImageError with its output on failure."""
        buildah = shutil.which("buildah")
        if buildah is None:
            raise ImageError("buildah is not installed (kubemint.devcluster.image.tools)")
        self._tmp.mkdir(parents=True, exist_ok=True)
        (self.root / "net").mkdir(exist_ok=True)
        run_root = Path(tempfile.mkdtemp(prefix="run.", dir=self._tmp))
        try:
            for name in ("upper", "work", "tmp"):
                (run_root / name).mkdir()
            env = {**os.environ, **self._configs(run_root)}
            command = _private(run_root, [buildah, *args])
            result = subprocess.run(
                command,
                env=env,
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        finally:
            shutil.rmtree(run_root, ignore_errors=True)
        if check and result.returncode != 0:
            output = (result.stderr.strip() or result.stdout.strip())[-4000:]
            raise ImageError(
                f"buildah {' '.join(args[:2])} failed ({result.returncode}):\n{output}"
            )
        return result

    def clean(self) -> None:
        """Remove what a killed build left: run roots, working containers. Only under the build
        lock (nothing else uses this storage then)."""
        for leftover in self._tmp.glob("run.*") if self._tmp.is_dir() else ():
            shutil.rmtree(leftover, ignore_errors=True)
        if self.graph.is_dir():
            self.buildah("rm", "--all", check=False)

    def has_image(self, reference: str) -> bool:
        if not self.graph.is_dir():
            return False
        found = self.buildah(
            "inspect", "--type", "image", "--format", "{{.FromImageID}}", reference, check=False
        )
        return found.returncode == 0


def _private(run_root: Path, command: Sequence[str]) -> list[str]:
    """`command` in a private mount namespace with /var/lib overlaid (see the module doc)."""
    if run_root.resolve().is_relative_to("/var/lib"):
        # A cache under /var/lib must stay writable: no overlay there (and nothing to catch).
        return ["unshare", "--mount", "--propagation", "private", "--", *command]
    return [
        "unshare", "--mount", "--propagation", "private", "--",
        "sh", "-c", _PRIVATE, "sh", str(run_root), *command,
    ]  # fmt: skip
