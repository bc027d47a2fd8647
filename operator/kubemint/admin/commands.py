"""The admin commands (`kubemint can-i | inspect | status`, also `kubectl kubemint …`).

They use the caller's kubeconfig and read rights only (docs/admin.md lists the RBAC), and
answer from the token server's own code: see can_i, inspect and status. Human output by
default, `-o json` for scripts. Exit codes: 0 yes / active / all Ready, 1 no / not active /
something to look at, 2 the question could not be answered (with one line on stderr saying
why: no access, no cluster, bad input).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kubemint.admin.errors import AdminError

if TYPE_CHECKING:  # loaded when an admin command runs: `kubemint token` needs no API client
    from kubemint.admin.cluster import Body, Objects, Reader
    from kubemint.store.snapshot import Snapshot

DEFAULT_SERVER_NAMESPACE = "kubemint-system"
CLAIMS_SOURCES = ("none", "cluster", "kubernetes", "tenant", "client")


def register(commands: Any) -> None:
    """Add the admin commands to a `kubemint` (or `kubectl kubemint`) subparsers object."""
    can_i = _subcommand(
        commands,
        "can-i",
        _can_i,
        help="would a client or ServiceAccount get these scopes for this audience, and why not",
        description=(
            "The token endpoint's decision as a dry run, from the same code: the caller is "
            "assumed to present its own credential; every other check (client, account, grant "
            "type, audience, scopes, each AccessRule and its `when` evaluated on the request "
            "described by the flags, the signing key) answers as the endpoint would, with its "
            "error, description and audit reason. Exit 0 if a token would be issued, 1 if not."
        ),
    )
    who = can_i.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--client", dest="client", help="client id, or NAMESPACE/NAME of an OAuth2Client"
    )
    who.add_argument(
        "--service-account",
        dest="account",
        metavar="NAMESPACE/NAME",
        help="a kubemint ServiceAccount (its client: --via, or its only one)",
    )
    can_i.add_argument("--via", help="the client the ServiceAccount uses (name or NAMESPACE/NAME)")
    can_i.add_argument("--audience", help="the audience requested (optional if the client has one)")
    can_i.add_argument("--scope", help="space-separated scopes requested (default: all allowed)")
    can_i.add_argument("--grant-type", default="client_credentials", help="request grant_type")
    can_i.add_argument("--source", default="", help="request.source: the caller's address")
    can_i.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a claim of the presented JWT (VALUE as JSON, else a string); repeatable",
    )
    can_i.add_argument(
        "--claims-source",
        choices=CLAIMS_SOURCES,
        default="none",
        help="who verified the presented JWT: request.issuerSource, and whether rules see its "
        "claims as claims (cluster, kubernetes) or tenantClaims (tenant, client)",
    )
    can_i.add_argument(
        "--audience-ownership",
        default=os.environ.get("KUBEMINT_AUDIENCE_OWNERSHIP", "firstClaim"),
        help="the token server's KUBEMINT_AUDIENCE_OWNERSHIP (default: firstClaim)",
    )

    inspect = _subcommand(
        commands,
        "inspect",
        _inspect,
        help="verify a token against the cluster's issuer: whose, which rule and key, revoked?",
        description=(
            "Verify an access token with the public keys the issuer serves (the key must be "
            "one of the server namespace's SigningKeys), and show the client, account, "
            "AccessRules and key it comes from, whether it is revoked and whether its client "
            "and account still stand. Exit 0 if the token is active, 1 if not."
        ),
    )
    inspect.add_argument("token", nargs="?", help="the token or a token response; default: stdin")
    inspect.add_argument(
        "--issuer",
        help="the issuer URL (default: the issuer its client's status names)",
    )

    status = _subcommand(
        commands,
        "status",
        _status,
        help="kubemint objects that are not Ready, rotations due, keys in JWKS and why",
        description=(
            "List every kubemint object whose Ready condition is not True (or is stale), "
            "rotations and overlaps due within --within, and each key of the server "
            "namespace's SigningKeys with why it is published; with --issuer (default: the "
            "issuer the OAuth2Clients' status names), checked against the JWKS served. "
            "Exit 0 if everything is Ready, 1 if not."
        ),
    )
    status.add_argument(
        "-n", "--namespace", help="only this namespace's objects (default: all namespaces)"
    )
    status.add_argument("--within", default="24h", help="rotations due within (default: 24h)")
    status.add_argument("--issuer", help="the issuer whose JWKS to compare with")

    for parser in (can_i, inspect, status):
        _common(parser)  # last, so that each command's --help lists its own flags first


def main(argv: Sequence[str] | None = None) -> int:
    """`kubectl-kubemint`: kubectl runs it for `kubectl kubemint …`."""
    parser = argparse.ArgumentParser(
        prog="kubectl kubemint", description="Ask kubemint why (read-only admin commands)."
    )
    register(parser.add_subparsers(title="commands", metavar="COMMAND"))
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    code: int = args.run(args)
    return code


def _subcommand(
    commands: Any,
    name: str,
    command: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=description)
    parser.set_defaults(run=_run(command), command_name=name)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server-namespace",
        default=os.environ.get("KUBEMINT_NAMESPACE", DEFAULT_SERVER_NAMESPACE),
        help="the token server's namespace (default: KUBEMINT_NAMESPACE or kubemint-system)",
    )
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")


def _run(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except AdminError as exc:
            print(f"kubemint {args.command_name}: {exc}", file=sys.stderr)
            return 2

    return run


def _reader(args: argparse.Namespace) -> Reader:
    from kubemint.admin.cluster import Reader, connect

    return Reader(connect(args.kubeconfig, args.context))


def _server_view(
    args: argparse.Namespace, objects: Objects, **options: Any
) -> tuple[list[Body], dict[str, list[Body]], Snapshot]:
    """The token server's view of `objects`: the SigningKeys it signs with are only those of
    its own namespace (one elsewhere is a tenant's object, never a key it serves)."""
    from kubemint.admin.can_i import snapshot_of

    signing = [
        b
        for b in objects.of("SigningKey")
        if (b.get("metadata") or {}).get("namespace") == args.server_namespace
    ]
    by_kind = {**objects.by_kind, "SigningKey": signing}
    snapshot = snapshot_of(
        by_kind, objects.audience_records, server_namespace=args.server_namespace, **options
    )
    return signing, by_kind, snapshot


# -- can-i ---------------------------------------------------------------------------------


def _can_i(args: argparse.Namespace) -> int:
    from kubemint.admin.can_i import Question, ask
    from kubemint.admin.cluster import KINDS
    from kubemint.api.audiences import InvalidMode, check_mode

    try:
        mode = check_mode(args.audience_ownership)
    except InvalidMode as exc:
        raise AdminError(str(exc)) from None
    question = Question(
        client=args.via if args.account else args.client,
        account=args.account,
        audience=args.audience,
        scope=args.scope,
        grant_type=args.grant_type,
        source=args.source,
        claims=_claims(args.claim),
        claims_source=args.claims_source,
    )
    objects = _reader(args).read(
        kinds=KINDS, namespace=None, server_namespace=args.server_namespace, records=True
    )
    _, by_kind, snapshot = _server_view(args, objects, audience_ownership=mode)
    answer = ask(question, snapshot, by_kind)
    if args.output == "json":
        print(json.dumps(answer.json(), indent=2, sort_keys=True))
    else:
        _print_answer(answer)
    return 0 if answer.allowed else 1


def _claims(pairs: list[str]) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise AdminError(f"--claim {pair!r}: use NAME=VALUE")
        try:
            claims[name] = json.loads(value)
        except ValueError:
            claims[name] = value
    return claims


def _print_answer(answer: Any) -> None:
    who = answer.subject or "the caller"
    if answer.allowed:
        print(f"yes: {who} gets {' '.join(answer.scopes) or '(no scope)'} for {answer.audience}")
    else:
        print(f"no: {answer.error}: {answer.description}")
        if answer.reason and answer.reason != answer.description:
            print(f"  reason (audit log): {answer.reason}")
        print(f"  decided by: the {answer.check} check")
    if answer.client_id:
        print(f"  client: {answer.client_id}")
    for rule in answer.rules:
        when = f"  when: {rule.when}" if rule.when else ""
        scopes = " ".join(rule.scopes) or "(audience only)"
        detail = f" ({rule.detail})" if rule.detail else ""
        print(f"  rule {rule.rule}: {rule.outcome}{detail}; scopes {scopes}{when}")
    if not answer.rules and answer.check in ("grant", "signing key", ""):
        print(f"  no AccessRule is for {answer.audience or 'this audience'}")
    for note in answer.notes:
        print(f"  note: {note}")


# -- inspect -------------------------------------------------------------------------------


def _inspect(args: argparse.Namespace) -> int:
    import httpx

    from kubemint.admin.cluster import KINDS
    from kubemint.admin.inspect import inspect
    from kubemint.crypto.jwt import InvalidJWT, decode_unverified

    token = (args.token or sys.stdin.read()).strip()
    if token.startswith("{"):  # a whole token response
        try:
            token = str(json.loads(token)["access_token"])
        except (ValueError, KeyError, TypeError):
            raise AdminError("the input is JSON without an access_token") from None
    objects = _reader(args).read(
        kinds=KINDS,
        namespace=None,
        server_namespace=args.server_namespace,
        records=True,
        revocations=True,
        kubernetes_accounts=True,
    )
    signing, _, snapshot = _server_view(
        args, objects, kubernetes_accounts=objects.kubernetes_accounts
    )
    issuer = args.issuer
    if not issuer:
        try:
            claimed = str(decode_unverified(token)[1].get("client_id", ""))
        except InvalidJWT:
            claimed = ""
        client = snapshot.clients.get(claimed)
        body = next(
            (
                b
                for b in objects.of("OAuth2Client")
                if client is not None
                and (b["metadata"].get("namespace"), b["metadata"].get("name"))
                == (client.ref.namespace, client.ref.name)
            ),
            None,
        )
        issuer = ((body or {}).get("status") or {}).get("issuer")
    jwks: dict[str, Any] = {"keys": []}
    if issuer:
        try:
            jwks = _jwks(issuer)
        except (httpx.HTTPError, ValueError) as exc:
            raise AdminError(f"cannot read {issuer}/oauth2/jwks: {exc}") from None
    found = inspect(
        token,
        issuer=issuer or "",
        jwks=jwks,
        snapshot=snapshot,
        signing_keys=signing,
        revocations=objects.revocations,
        now=time.time(),
    )
    if not issuer and found.format == "jwt":
        found.problem = found.problem or "issuer unknown: give --issuer"
        found.verified = False
    if args.output == "json":
        print(json.dumps(found.json(), indent=2, sort_keys=True, default=str))
    else:
        _print_inspection(found)
    return 0 if found.active else 1


def _jwks(issuer: str) -> dict[str, Any]:
    import httpx

    response = httpx.get(issuer.rstrip("/") + "/oauth2/jwks", timeout=10)
    response.raise_for_status()
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError("the JWKS is not a JSON object")
    return body


def _print_inspection(found: Any) -> None:
    verdict = "active" if found.active else "NOT active"
    print(f"{verdict}: {found.format} token" + (f" ({found.problem})" if found.problem else ""))
    claims = found.claims
    rows = [
        ("verified", "yes" if found.verified else "no"),
        ("issuer", found.issuer),
        ("key", f"{found.kid} {found.key or '(no SigningKey has this kid)'}" if found.kid else ""),
        ("client", f"{claims.get('client_id', '')} {found.client and '(' + found.client + ')'}"),
        (
            "subject",
            f"{claims.get('sub', '')} {found.account and '(ServiceAccount ' + found.account + ')'}",
        ),
        ("audience", claims.get("aud", "")),
        ("scope", claims.get("scope", "")),
        ("expires", _when(claims.get("exp"))),
        ("issued", _when(claims.get("iat"))),
        ("jti", claims.get("jti", "")),
        ("revoked", {None: "", True: "yes", False: "no"}[found.revoked]),
        ("standing", found.standing),
    ]
    for name, value in rows:
        if value not in ("", None) and str(value).strip():
            print(f"  {name}: {str(value).strip()}")
    for rule in found.rules:
        print(f"  rule: {rule}")
    for note in found.notes:
        print(f"  note: {note}")


def _when(epoch: Any) -> str:
    if not isinstance(epoch, int):
        return ""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- status --------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    import httpx

    from kubemint.admin.cluster import KINDS
    from kubemint.admin.status import status
    from kubemint.api.meta import InvalidDuration, parse_duration

    try:
        within = parse_duration(args.within, "--within")
    except InvalidDuration as exc:
        raise AdminError(str(exc)) from None
    reader = _reader(args)
    namespaced = [k for k in KINDS if k not in ("SigningKey", "TrustedIssuer")]
    objects = reader.read(
        kinds=namespaced, namespace=args.namespace, server_namespace=args.server_namespace
    )
    # Keys and trusted issuers live in the server namespace: a tenant may not see them.
    server = reader.read(
        kinds=("SigningKey", "TrustedIssuer"),
        namespace=args.server_namespace,
        server_namespace=args.server_namespace,
        optional=True,
    )
    by_kind = {**objects.by_kind, **server.by_kind}
    if args.namespace and args.namespace != args.server_namespace:
        by_kind["SigningKey"] = [
            b for b in by_kind["SigningKey"] if b["metadata"].get("namespace") == args.namespace
        ]
    issuer = args.issuer or _issuer_of(objects.of("OAuth2Client"))
    jwks = None
    notes = list(server.unreadable)
    if issuer and server.of("SigningKey"):
        try:
            jwks = _jwks(issuer)
        except (httpx.HTTPError, ValueError) as exc:
            notes.append(f"JWKS: cannot read {issuer}/oauth2/jwks: {exc}")
    found = status(
        by_kind,
        now=datetime.datetime.now(datetime.UTC),
        within=within,
        server_namespace=args.server_namespace,
        jwks=jwks,
    )
    found.unreadable = notes
    if args.output == "json":
        print(json.dumps(found.json(), indent=2, sort_keys=True))
    else:
        _print_status(found, issuer if jwks is not None else None)
    return 1 if found.problems else 0


def _issuer_of(clients: list[dict[str, Any]]) -> str | None:
    """The issuer the OAuth2Clients' status names, when they agree on one."""
    named = {str((c.get("status") or {}).get("issuer")) for c in clients}
    named.discard("None")
    return named.pop() if len(named) == 1 else None


def _print_status(found: Any, issuer: str | None) -> None:
    if found.problems:
        print(f"not Ready ({len(found.problems)}):")
        for p in found.problems:
            print(f"  {p.kind} {p.object}: {p.reason}: {p.message}")
    else:
        print("every kubemint object is Ready")
    if found.rotations:
        print("rotations due:")
        for r in found.rotations:
            print(f"  {r.kind} {r.object}: {r.what} {r.at}{' (past)' if r.due else ''}")
    if found.keys:
        print("keys" + (f" (JWKS of {issuer})" if issuer else "") + ":")
        for k in found.keys:
            served = {None: "", True: " [served]", False: " [NOT served]"}[k.served]
            print(f"  {k.signing_key} {k.kid} {k.state}{served}: {k.why}")
    for kid in found.unexplained:
        print(f"  {kid}: served, but no SigningKey names it")
    for note in found.unreadable:
        print(f"note: not readable with your rights: {note}")
