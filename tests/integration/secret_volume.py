"""A Secret volume laid out and updated the way the kubelet's AtomicWriter does it.

The kubelet writes a Secret's keys into a timestamped directory `..<timestamp>`, points the
symlink `..data` at it, and exposes each key as a symlink `<key> -> ..data/<key>`. An update
writes a new timestamped directory, creates `..data_tmp` pointing at it, renames `..data_tmp`
over `..data` (the one atomic step) and removes the old directory. Readers that open
`<key>` see either the old or the new content, never a mix; a program that resolved and kept
the old directory's path sees it vanish.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path


class SecretVolume:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def write(self, data: Mapping[str, str]) -> None:
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
        fresh = self.root / f"..{stamp}.{uuid.uuid4().hex[:9]}"
        fresh.mkdir()
        for key, value in data.items():
            (fresh / key).write_text(value)
            os.chmod(fresh / key, 0o644)
        data_link = self.root / "..data"
        old = Path(os.readlink(data_link)) if data_link.is_symlink() else None
        tmp = self.root / "..data_tmp"
        os.symlink(fresh.name, tmp)
        os.rename(tmp, data_link)
        for key in data:
            if not (self.root / key).is_symlink():
                os.symlink(f"..data/{key}", self.root / key)
        if old is not None:
            shutil.rmtree(self.root / old)
