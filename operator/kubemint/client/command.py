"""`kubemint token`: print a token, or keep token files fresh (a sidecar's whole job).

Every failure is one line on stderr, never a traceback: `kubemint token: <what failed>` for a
one-shot token (exit 1), and, with --watch, a warning per failed attempt while the files keep
their last good tokens and the attempts go on.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx

from kubemint.client.credentials import Credentials, CredentialsError
from kubemint.client.retry import RETRIABLE, describe
from kubemint.client.tokenfile import keep_all_fresh
from kubemint.client.tokens import TokenSource

KEYS = ("path", "audience", "scope")


class UsageError(ValueError):
    pass


@dataclass(frozen=True)
class TokenFile:
    path: Path
    audience: str | None
    scope: str | None


def parse_out(value: str, audience: str | None, scope: str | None) -> TokenFile:
    """`--out FILE` (with the command's --audience/--scope), or
    `--out path=FILE,audience=AUD,scope=S1 S2` (each part optional but path)."""
    if not value.startswith("path="):
        return TokenFile(Path(value), audience, scope)
    fields: dict[str, str] = {}
    for part in value.split(","):
        key, sep, text = part.partition("=")
        key = key.strip()
        if not sep or key not in KEYS:
            raise UsageError(
                f"--out {value!r}: {part!r} is not one of path=, audience=, scope= "
                "(separated by commas)"
            )
        if key in fields:
            raise UsageError(f"--out {value!r}: {key}= is given twice")
        fields[key] = text.strip()
    if not fields.get("path"):
        raise UsageError(f"--out {value!r}: path= is empty")
    return TokenFile(
        Path(fields["path"]), fields.get("audience") or audience, fields.get("scope") or scope
    )


def credentials_from(args: argparse.Namespace) -> Credentials:
    if args.credentials:
        return Credentials.from_directory(args.credentials, args.private_key)
    if args.projected_token and args.client_id and args.token_url:
        return Credentials.from_projected_token(
            args.projected_token, args.client_id, args.token_url
        )
    raise UsageError(
        "give --credentials DIR, or --projected-token PATH with --client-id and --token-url"
    )


def run(args: argparse.Namespace) -> int:
    try:
        credentials = credentials_from(args)
        files = [parse_out(value, args.audience, args.scope) for value in args.out]
        if args.watch and not files:
            raise UsageError("--watch needs --out FILE")
        if len({f.path.resolve() for f in files}) != len(files):
            raise UsageError("each --out needs its own file")
        if files and not args.watch:
            raise UsageError("--out needs --watch (without it, the token is printed)")
        if args.renew_before is not None and not args.renew_before >= 0:
            raise UsageError("--renew-before must be 0 or more seconds")
        if not args.retry_max > 0:
            raise UsageError("--retry-max must be more than 0 seconds")
    except UsageError as exc:
        print(f"kubemint token: {exc}", file=sys.stderr)
        return 2
    except CredentialsError as exc:
        print(f"kubemint token: {exc}", file=sys.stderr)
        return 1
    if args.watch:
        return _watch(args, credentials, files)
    with _source(args, credentials, args.audience, args.scope, None) as source:
        try:
            print(source.token())
        except RETRIABLE as exc:
            print(f"kubemint token: {describe(exc)}", file=sys.stderr)
            return 1
    return 0


def _source(
    args: argparse.Namespace,
    credentials: Credentials,
    audience: str | None,
    scope: str | None,
    http: httpx.Client | None,
) -> TokenSource:
    return TokenSource(
        credentials,
        scope=scope,
        audience=audience,
        http=http,
        renew_before=args.renew_before,
        retry_cap=args.retry_max,
    )


def _watch(args: argparse.Namespace, credentials: Credentials, files: list[TokenFile]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with httpx.Client(timeout=10) as http:  # one connection pool for every file
        sources = [_source(args, credentials, f.audience, f.scope, http) for f in files]
        keep_all_fresh(
            [(s, f.path) for s, f in zip(sources, files, strict=True)], stop, retry=args.retry_max
        )
    return 0
