"""A workload that runs inside pods on the kubemint image (mounted from a ConfigMap).

    python /work/workload.py tokens --credentials DIR [--verify-issuer URL --audience AUD]

Asks for a token every `--interval` seconds the way the README tells Python workloads to
(kubemint.client.TokenSource with the mounted Secret, re-read at each request), optionally
verifies each with kubemint.verify like a resource server, and prints one JSON line per second
(`{"status": …, "ok": n, "failed": m, "errors": [...]}`) plus one line whenever the mounted
client secret's content changes (`{"event": "secret-changed", "t": <unix time>, "swapped":
<unix time>, "new": <the new content's SHA-256, 12 hex digits>}`: when this loop saw it, and
when the kubelet swapped the volume's files), so the test can read from `kubectl logs` how
many requests failed and when the kubelet swapped the file to which content.
With `--projected-token FILE --client-id ID --token-url URL` it uses a projected
ServiceAccount token instead of a Secret.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from kubemint.client import Credentials, TokenSource
from kubemint.verify import Verifier


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["tokens"])
    parser.add_argument("--credentials", type=Path)
    parser.add_argument("--projected-token", type=Path)
    parser.add_argument("--client-id")
    parser.add_argument("--token-url")
    parser.add_argument("--scope")
    parser.add_argument("--audience")
    parser.add_argument("--verify-issuer")
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.credentials:
        credentials = Credentials.from_directory(args.credentials)
        watched = args.credentials / "client-secret"
    else:
        credentials = Credentials.from_projected_token(
            args.projected_token, args.client_id, args.token_url
        )
        watched = args.projected_token
    verifier = (
        Verifier(issuer=args.verify_issuer, audience=args.audience) if args.verify_issuer else None
    )
    source = TokenSource(credentials, scope=args.scope, audience=args.audience)
    ok = failed = verified = 0
    errors: list[str] = []
    kids: set[str] = set()
    seen = _digest(watched)
    last_report = 0.0
    while True:
        try:
            token = source.token(force=True)
            ok += 1
            if verifier is not None:
                verifier.verify(token)
                verified += 1
                kids.add(_kid(token))
        except Exception as exc:  # every failure is counted and reported
            failed += 1
            errors.append(f"{time.time():.1f} {type(exc).__name__}: {exc}"[:300])
        now = time.time()
        if (digest := _digest(watched)) != seen:
            seen = digest
            swapped = _swapped_at(watched)
            event = {"event": "secret-changed", "t": now, "swapped": swapped, "new": digest[:12]}
            print(json.dumps(event), flush=True)
        if now - last_report >= 1:
            last_report = now
            status = {"status": now, "ok": ok, "failed": failed, "verified": verified}
            status["kids"] = sorted(kids)
            print(json.dumps({**status, "errors": errors[-5:]}), flush=True)
        time.sleep(args.interval)


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def _swapped_at(path: Path) -> float | None:
    """When the kubelet last swapped the files of `path`'s volume, on the host's clock (the
    pod's is the host's): its atomic writer writes a new directory, then renames the `..data`
    symlink onto the old one, and that rename (which sets the symlink's ctime) is the moment
    the new content became visible. None where there is no `..data`."""
    try:
        return os.lstat(path.parent / "..data").st_ctime
    except OSError:
        return None


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


if __name__ == "__main__":
    raise SystemExit(main())
