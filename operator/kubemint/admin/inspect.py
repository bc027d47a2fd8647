"""`kubemint inspect TOKEN`: is it one of ours, whose, from which rule and key, still standing?

The token is read with `kubemint.oauth.introspection.read_token` (what introspection and
forward-auth read tokens with), against the public keys the issuer serves in its JWKS; a
key counts as the cluster's only if a SigningKey of the server namespace names its kid
(status: active, next, retired or withdrawn), so a token naming another issuer with keys of
its own is not "verified" here. Revocation is the server's `RevocationIndex` over the
revocation ConfigMaps, and whether the client and account still stand is
`kubemint.oauth.provenance.withdrawn`, over the view built from the cluster's objects.
Opaque and encrypted tokens only the token server can open: their introspection answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kubemint.api.meta import KIND_SIGNING_KEY
from kubemint.api.signingkey import withdrawn_by
from kubemint.crypto.jwt import InvalidJWT, decode_unverified, prepared_keys, protected_header
from kubemint.crypto.opaque import opaque_kid
from kubemint.oauth.introspection import read_token
from kubemint.oauth.provenance import withdrawn
from kubemint.store.revocations import RevocationIndex
from kubemint.store.snapshot import Snapshot

Body = dict[str, Any]


@dataclass
class Inspection:
    format: str  # jwt, opaque, jwe, unreadable
    verified: bool = False
    problem: str = ""  # why it is not verified, or not standing
    issuer: str = ""
    kid: str = ""
    key: str = ""  # SigningKey name and the kid's state there
    claims: dict[str, Any] = field(default_factory=dict)
    client: str = ""  # namespace/name of the OAuth2Client holding client_id
    account: str = ""  # namespace/name of the kubemint ServiceAccount (sub)
    rules: list[str] = field(default_factory=list)  # rules granting it now
    revoked: bool | None = None
    standing: str = ""  # "yes", or why the token no longer stands
    notes: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.verified and self.revoked is False and self.standing == "yes"

    def json(self) -> dict[str, Any]:
        return {**self.__dict__, "active": self.active}


def inspect(
    token: str,
    *,
    issuer: str,
    jwks: Mapping[str, Any],
    snapshot: Snapshot,
    signing_keys: list[Body],
    revocations: list[Body],
    now: float,
) -> Inspection:
    token = token.strip()
    if opaque_kid(token) is not None:
        return _sealed("opaque", opaque_kid(token) or "", signing_keys)
    if token.count(".") == 4:
        return _sealed("jwe", str(_header(token).get("kid", "")), signing_keys)
    try:
        header, claims = decode_unverified(token)
    except InvalidJWT as exc:
        return Inspection("unreadable", problem=f"not a JWT: {exc}")
    found = Inspection("jwt", issuer=issuer, kid=str(header.get("kid", "")), claims=claims)
    found.key = _key_of(found.kid, signing_keys)
    try:
        keys = prepared_keys([k for k in jwks.get("keys") or () if isinstance(k, Mapping)])
        found.claims = read_token(token, replace(snapshot, verification_keys=keys), issuer, now)
        found.verified = bool(found.key)
        if not found.key:
            found.problem = (
                f"kid {found.kid} is not a key of any SigningKey in the server namespace"
            )
    except InvalidJWT as exc:
        found.problem = str(exc)
    _provenance(found, snapshot, revocations)
    return found


def _provenance(found: Inspection, snapshot: Snapshot, revocations: list[Body]) -> None:
    claims = found.claims
    client = snapshot.clients.get(str(claims.get("client_id")))
    if client is not None:
        found.client = f"{client.ref.namespace}/{client.ref.name}"
    account = snapshot.accounts_by_subject.get(str(claims.get("sub", "")))
    if account is not None:
        found.account = f"{account.ref.namespace}/{account.ref.name}"
    index = RevocationIndex()
    index.reset(revocations)
    found.revoked = index.revokes(claims)
    found.standing = withdrawn(claims, snapshot) or "yes"
    subject = account.ref if account is not None else client.ref if client is not None else None
    audiences = claims.get("aud")
    granted = set(str(claims.get("scope", "")).split())
    for audience in [audiences] if isinstance(audiences, str) else list(audiences or ()):
        for rule in snapshot.rules.get(str(audience), ()):
            if subject in rule.subjects and (rule.scopes & granted or not rule.scopes):
                when = " (when: " + rule.condition.source + ")" if rule.condition else ""
                scopes = " ".join(sorted(rule.scopes & granted)) or "(audience only)"
                found.rules.append(f"{rule.ref.namespace}/{rule.ref.name}: {scopes}{when}")
    if not found.rules:
        found.notes.append("no AccessRule grants this subject these scopes for the audience now")


def _sealed(kind: str, kid: str, signing_keys: list[Body]) -> Inspection:
    return Inspection(
        kind,
        kid=kid,
        key=_key_of(kid, signing_keys),
        problem=f"an {kind} token: only the token server can open it; ask its introspection "
        "endpoint (POST /oauth2/introspect)",
    )


def _header(token: str) -> dict[str, Any]:
    try:
        return protected_header(token)
    except InvalidJWT:
        return {}


def _key_of(kid: str, signing_keys: list[Body]) -> str:
    """`SigningKey <name> (<state>)` for the key that has this kid, or ""."""
    for body in signing_keys:
        state = key_state(body, kid)
        if state:
            return f"{KIND_SIGNING_KEY} {body['metadata']['name']} ({state})"
    return ""


def key_state(body: Body, kid: str) -> str:
    """What a SigningKey's status says of one kid: active, next, retired, withdrawn."""
    status = body.get("status") or {}
    if kid in withdrawn_by(body):
        return "withdrawn"
    if (status.get("active") or {}).get("kid") == kid:
        return "active"
    if (status.get("next") or {}).get("kid") == kid:
        return "next"
    if any(r.get("kid") == kid for r in status.get("retired") or () if isinstance(r, Mapping)):
        return "retired"
    return ""
