"""Copy the apps' source code into the ConfigMaps of the calendar scenario's manifests.

The Deployments in examples/calendar run these programs from ConfigMaps on the kubemint image
(which already has Python, Starlette, uvicorn, httpx and kubemint), so each manifest embeds
its .py file as a YAML literal block. Edit the .py file, never the block, then run

    python examples/calendar/apps/render.py          # rewrite the blocks
    python examples/calendar/apps/render.py --check  # exit 1 if a block is out of date

tests/unit/test_examples.py fails while a ConfigMap differs from its file.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

APPS = Path(__file__).resolve().parent
EXAMPLE = APPS.parent
# manifest -> the apps whose code it embeds (as ConfigMap data keys of the same name)
TARGETS = {
    "60-calendar-service.yaml": ("calendar_api.py",),
    "61-files-service.yaml": ("files_api.py",),
    "70-task-service-deployment.yaml": ("task_service.py",),
}


class RenderError(ValueError):
    pass


def literal_block(code: str, indent: str) -> list[str]:
    """`code` as the lines of a YAML literal block scalar (`key: |`) indented by `indent`."""
    if not code.endswith("\n") or code.endswith("\n\n"):
        raise RenderError("the code must end with exactly one newline")
    lines = code.splitlines()
    if lines and lines[0][:1].isspace():
        raise RenderError("the first line must not be indented")
    if any(line != line.rstrip() or "\t" in line for line in lines):
        raise RenderError("no tabs or trailing whitespace (YAML would not keep them)")
    return [indent + line if line else "" for line in lines]


def render(manifest: str, apps: dict[str, str]) -> str:
    """`manifest` with the literal block of each `name: |` key replaced by `apps[name]`."""
    lines = manifest.splitlines()
    for name, code in apps.items():
        header = re.compile(rf"^(?P<indent> *){re.escape(name)}: \|$")
        starts = [i for i, line in enumerate(lines) if header.match(line)]
        if len(starts) != 1:
            raise RenderError(f"expected one line '{name}: |', found {len(starts)}")
        start = starts[0] + 1
        match = header.match(lines[starts[0]])
        assert match is not None
        indent = match["indent"] + "  "
        end = start
        while end < len(lines) and (not lines[end].strip() or lines[end].startswith(indent)):
            end += 1
        while end > start and not lines[end - 1].strip():
            end -= 1  # blank lines after the block belong to what follows
        lines[start:end] = literal_block(code, indent)
    return "\n".join(lines) + "\n"


def stale(write: bool) -> list[Path]:
    """The manifests whose blocks differ from the apps' files (rewritten when `write`)."""
    changed = []
    for manifest_name, app_names in TARGETS.items():
        path = EXAMPLE / manifest_name
        current = path.read_text()
        wanted = render(current, {name: (APPS / name).read_text() for name in app_names})
        if wanted != current:
            changed.append(path)
            if write:
                path.write_text(wanted)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="embed examples/calendar/apps/*.py")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if stale")
    args = parser.parse_args(argv)
    changed = stale(write=not args.check)
    for path in changed:
        print(f"{'stale' if args.check else 'updated'}: {path.relative_to(EXAMPLE.parent.parent)}")
    return 1 if changed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
