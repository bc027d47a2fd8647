"""The Debian mirrors of the base image: the machine's own apt sources, for bookworm.

mmdebstrap is given explicit one-line sources (`deb URI SUITE main`) built from the entries of
/etc/apt/sources.list and /etc/apt/sources.list.d/ (one-line `.list` and deb822 `.sources`)
whose suite is bookworm, bookworm-updates or bookworm-security: the same mirrors (or proxy)
the machine already uses, and nothing of its third-party repositories.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
SUITES = (SUITE, f"{SUITE}-updates", f"{SUITE}-security")
APT_DIR = Path("/etc/apt")
# Newline-separated `deb URI SUITE COMPONENTS` lines used instead of the machine's sources.
OVERRIDE = "KUBEMINT_DEBIAN_SOURCES"


@dataclass(frozen=True)
class Entry:
    uri: str
    suite: str


def parse_one_line(text: str) -> list[Entry]:
    """Entries of a one-line sources.list (`deb [options] URI SUITE COMPONENT...`)."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 3 and "main" in words[2:]:
            entries.append(Entry(words[0].rstrip("/"), words[1]))
    return entries


def parse_deb822(text: str) -> list[Entry]:
    """Entries of a deb822 `.sources` file (stanzas separated by blank lines)."""
    entries = []
    for stanza in _stanzas(text):
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in stanza.get("types", "").split():
            continue
        if "main" not in stanza.get("components", "").split():
            continue
        for uri in stanza.get("uris", "").split():
            entries += [Entry(uri.rstrip("/"), suite) for suite in stanza.get("suites", "").split()]
    return entries


def _stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = [{}]
    key = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if not raw.strip():
            stanzas.append({})
            continue
        if raw[0] in " \t" and key:
            stanzas[-1][key] += " " + raw.strip()
            continue
        key, _, value = raw.partition(":")
        key = key.strip().lower()
        stanzas[-1][key] = value.strip()
    return [s for s in stanzas if s]


def mirror_lines(entries: Iterable[Entry]) -> list[str]:
    """`deb URI SUITE main` for each bookworm suite the entries name, first mirror first."""
    lines: list[str] = []
    for suite in SUITES:
        for entry in entries:
            line = f"deb {entry.uri} {entry.suite} main"
            if entry.suite == suite and line not in lines:
                lines.append(line)
    return lines


def machine_sources(apt_dir: Path = APT_DIR) -> list[str]:
    """The mirror lines for mmdebstrap, from KUBEMINT_DEBIAN_SOURCES or the machine's apt."""
    override = os.environ.get(OVERRIDE, "").strip()
    if override:
        return [line.strip() for line in override.splitlines() if line.strip()]
    entries: list[Entry] = []
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        if path.suffix == ".sources":
            entries += parse_deb822(path.read_text())
        elif path.suffix == ".list" or path.name == "sources.list":
            entries += parse_one_line(path.read_text())
    lines = mirror_lines(entries)
    if not any(line.split()[2] == SUITE for line in lines):
        raise ValueError(
            f"no apt source for Debian {SUITE} main in {apt_dir}: set {OVERRIDE} to "
            f"'deb <mirror> {SUITE} main' lines"
        )
    return lines
