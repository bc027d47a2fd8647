"""Where a token request's time goes: py-spy samples of the server, summed by part of the path.

`bench.token_bench --profile DIR` records the serving process with py-spy while it loads one
endpoint (threads waiting idle are not sampled, and samples of the view's own threads are
dropped here: what is left is the event loop's thread, busy), and this module sorts each
sample into one part of the request path. A sample goes to the deepest frame of its stack that
names a part (so `json.dumps` called by the signer counts as signing, and the signer called
by the token handler counts as signing, not as the handler).

    python -m bench.profile DIR/kubemint-ES256.txt   # the breakdown of a recorded file
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

# (part, substrings of a frame "function (file:line)"): the last part whose substring occurs
# in the deepest frame that matches any wins. Order is from general to specific.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("event loop, uvicorn HTTP", ("asyncio/", "uvicorn/", "uvloop", "httptools")),
    ("Starlette routing, middleware", ("starlette/", "anyio/")),
    ("request: headers, body", ("starlette/requests.py", "starlette/datastructures.py")),
    ("response: JSON, headers", ("starlette/responses.py", "JSON.render")),
    ("handler glue", ("kubemint/server/app.py", "bare_token_app.py")),
    ("form parsing", ("_form (kubemint/server/app.py",)),
    ("source address", ("source_of (", "kubemint/server/sources.py", "ipaddress.py")),
    ("grant dispatch", ("kubemint/oauth/token_endpoint.py",)),
    ("client auth, rate limits", ("kubemint/oauth/client_auth.py", "kubemint/oauth/ratelimit")),
    ("client auth, rate limits", ("kubemint/crypto/secrets.py",)),
    ("policy: rules, CEL answers", ("kubemint/oauth/policy.py", "kubemint/policy/")),
    ("policy: rules, CEL answers", ("kubemint/oauth/claim_sources.py",)),
    ("claims", ("kubemint/oauth/tokens.py", "kubemint/oauth/provenance.py")),
    ("claims", ("kubemint/api/identity.py", "token_urlsafe")),
    ("sign: JWS, ECDSA/RSA", ("kubemint/crypto/jwt.py", "cryptography/", "joserfc/")),
    ("audit log", ("logging/", "kubemint/logs.py", "audit (kubemint/server/responses.py")),
    ("metrics", ("prometheus_client/", "kubemint/server/metrics.py")),
)
OTHER = "other"


def part_of(frames: Sequence[str]) -> str:
    """The part a sample (frames root → leaf) belongs to."""
    for frame in reversed(frames):
        found = None
        for part, needles in PARTS:
            if any(needle in frame for needle in needles):
                found = part
        if found is not None:
            return found
    return OTHER


def breakdown(lines: Iterable[str]) -> Counter[str]:
    """Samples per part, from py-spy's `--format raw` (collapsed stacks: `f1;f2;… count`)."""
    parts: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if "Thread._bootstrap" in stack and "anyio/" not in stack:
            continue  # watch, rebuild and sweeper threads: not the request path
        parts[part_of(frames)] += int(count)
    return parts


def table(columns: dict[str, Counter[str]]) -> str:
    """Percent of each column's samples per part, parts ordered by the first column."""
    if not columns:
        return ""
    first = next(iter(columns.values()))
    order = [p for p, _ in first.most_common()]
    order += sorted({p for c in columns.values() for p in c} - set(order))
    width = max(len(p) for p in order) if order else 10
    lines = ["  " + " " * width + "".join(f" {label:>16}" for label in columns)]
    for part in order:
        cells = ""
        for counts in columns.values():
            total = sum(counts.values())
            cells += f" {100 * counts[part] / total if total else 0:15.1f}%"
        lines.append(f"  {part:{width}}{cells}")
    totals = "".join(f" {sum(c.values()):16d}" for c in columns.values())
    lines.append(f"  {'samples':{width}}{totals}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    columns = {Path(name).stem: breakdown(Path(name).read_text().splitlines()) for name in argv}
    print(table(columns))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
