"""Forward-auth decisions on a hand-built snapshot: identity on success, RFC 6750 challenges,
and the attacks (another namespace's rule, a token for another audience, a revoked or
tampered token, a disabled, deleted or re-created client or account)."""

from __future__ import annotations

import base64
import datetime
import json
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest

from kubemint.api.records import StoredKey
from kubemint.authz.decision import EXPIRY_LEEWAY, VerifiedTokens, authorize
from kubemint.authz.requests import OriginalRequest
from kubemint.crypto import keys
from kubemint.store.revocations import RevocationIndex, Target, entry_body, watermark_body
from kubemint.store.snapshot import Snapshot
from tests.unit.records import build, keys_secret

ISSUER = "https://kubemint.test"
CALENDAR = "https://calendar.example.com"
EVIL = "https://evil.example.com"
HOST = "calendar.example.com"
NOW = datetime.datetime.now(datetime.UTC)
OLD, NEW = "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"


def _meta(namespace: str, name: str, created: str = OLD) -> dict[str, Any]:
    return {"namespace": namespace, "name": name, "creationTimestamp": created}


def _rule(namespace: str, audience: str, http: list[dict[str, Any]], created: str = OLD) -> Any:
    return {
        "metadata": _meta(namespace, f"{namespace}-rule", created),
        "spec": {"audience": audience, "scopes": ["event.view"], "http": http, "subjects": []},
    }


# Revocations as the token server's index holds them: a bucket of the previous format (still
# honoured after an upgrade), one entry, one client's watermark.
REVOKED = RevocationIndex()
REVOKED.reset(
    [
        {
            "metadata": {"name": "kubemint-revoked-x"},
            "data": {"revoked-jti": str(int(time.time()) + 600)},
        },
        entry_body(
            "kubemint-system",
            Target("entry-jti", int(time.time()) + 600, None, "tasks.task-service"),
        ),
        watermark_body("kubemint-system", "tasks.watermarked", "", int(time.time()) - 30),
    ]
)
CALENDAR_HTTP = [
    {"paths": ["/api/events"], "methods": ["GET", "HEAD"], "scopes": ["event.view"]},
    {"paths": ["/api/events"], "methods": ["POST"], "scopes": ["event.create"]},
    {"paths": ["/api/admin"], "scopes": ["event.admin"]},
    {"paths": ["/api/ping"]},
]


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    signing = StoredKey(keys.generate("ES256"), "active", NOW, activated_at=NOW)
    return build(
        server_namespace="kubemint-system",
        clients=[
            {
                "metadata": {**_meta("tasks", "task-service"), "uid": "uid-task-service"},
                "spec": {"audiences": [CALENDAR]},
            },
            {
                "metadata": _meta("tasks", "off"),
                "spec": {"audiences": [CALENDAR], "disabled": True},
            },
        ],
        accounts=[],
        rules=[
            _rule("calendar", CALENDAR, CALENDAR_HTTP),
            # An intruder claims the same audience later (owned by nobody but calendar) and
            # tries to open the calendar host from its own audience.
            _rule("intruder", CALENDAR, [{"paths": ["/"]}], created=NEW),
            _rule("evil", EVIL, [{"hosts": [HOST], "paths": ["/"]}]),
        ],
        signing_keys=[
            {"metadata": {"namespace": "kubemint-system", "name": "default"}, "spec": {}}
        ],
        secrets=[keys_secret("default", [signing])],
    )


def _token(snapshot: Snapshot, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "tasks.task-service",
        "client_id": "tasks.task-service",
        "aud": CALENDAR,
        "scope": "event.view",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    signer = snapshot.keys["default"].signer
    assert signer is not None
    return signer.sign({k: v for k, v in claims.items() if v is not None})


def _decide(
    snapshot: Snapshot,
    token: str | None,
    path: str = "/api/events",
    method: str = "GET",
    audience: str = CALENDAR,
) -> Any:
    return authorize(
        snapshot,
        issuer=ISSUER,
        revoked=REVOKED,
        audience=audience,
        authorization=None if token is None else f"Bearer {token}",
        request=OriginalRequest(method, HOST, path),
        now=time.time(),
    )


def test_allowed_with_identity_headers(snapshot: Snapshot) -> None:
    decision = _decide(snapshot, _token(snapshot, scope="event.view event.create"))
    assert decision.status == 200
    assert decision.headers == {
        "X-Auth-Subject": "tasks.task-service",
        "X-Auth-Client-Id": "tasks.task-service",
        "X-Auth-Scope": "event.create event.view",
        "X-Auth-Audience": CALENDAR,
    }


def test_an_entry_without_scopes_needs_only_a_token_for_the_audience(snapshot: Snapshot) -> None:
    assert _decide(snapshot, _token(snapshot, scope=None), "/api/ping").status == 200


def test_no_token_is_a_bare_challenge(snapshot: Snapshot) -> None:
    decision = _decide(snapshot, None)
    assert decision.status == 401
    assert decision.headers["WWW-Authenticate"] == f'Bearer realm="{CALENDAR}"'
    assert "error" not in decision.body


def test_a_basic_header_is_not_a_bearer_token(snapshot: Snapshot) -> None:
    decision = authorize(
        snapshot,
        issuer=ISSUER,
        revoked=REVOKED,
        audience=CALENDAR,
        authorization="Basic dXNlcjpwYXNz",
        request=OriginalRequest("GET", HOST, "/api/events"),
        now=time.time(),
    )
    assert decision.status == 401
    assert decision.reason == "missing_token"


def test_missing_scope_is_403_naming_the_scope(snapshot: Snapshot) -> None:
    decision = _decide(snapshot, _token(snapshot), method="POST")
    assert decision.status == 403
    assert decision.headers["WWW-Authenticate"] == (
        f'Bearer realm="{CALENDAR}", error="insufficient_scope", '
        f'error_description="POST {HOST}/api/events needs scope event.create", '
        'scope="event.create"'
    )
    assert decision.body["error"] == "insufficient_scope"


def test_a_request_no_entry_covers_is_denied(snapshot: Snapshot) -> None:
    decision = _decide(snapshot, _token(snapshot), "/api/other")
    assert (decision.status, decision.body["error"]) == (403, "access_denied")
    assert "WWW-Authenticate" not in decision.headers
    assert decision.reason == "no_rule"


def test_an_anonymous_caller_learns_nothing_about_rules(snapshot: Snapshot) -> None:
    assert _decide(snapshot, None, "/api/other").status == 401


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"iss": "https://other-issuer.test"}, "issuer"),
        ({"aud": EVIL}, f"the token is not for {CALENDAR}"),
        ({"jti": "revoked-jti"}, "revoked"),
        ({"jti": "entry-jti"}, "revoked"),
        ({"client_id": "tasks.watermarked", "iat": int(time.time()) - 60}, "revoked"),
        ({"client_id": "tasks.off", "sub": "tasks.off"}, "disabled"),
        ({"client_id": "tasks.gone", "sub": "tasks.gone"}, "the client no longer exists"),
        ({"kubemint.io": {"client": {"uid": "uid-deleted"}}}, "it was re-created"),
        ({"sub": "kubemint:serviceaccount:tasks:gone"}, "the ServiceAccount no longer exists"),
    ],
    ids=[
        "expired",
        "another issuer",
        "another audience",
        "revoked (a legacy bucket)",
        "revoked (an entry)",
        "revoked (issued before its client's watermark)",
        "a disabled client",
        "a deleted client",
        "a re-created client",
        "a deleted account",
    ],
)
def test_bad_tokens_are_401_invalid_token(
    snapshot: Snapshot, overrides: dict[str, Any], message: str
) -> None:
    decision = _decide(snapshot, _token(snapshot, **overrides))
    assert decision.status == 401
    assert decision.body["error"] == "invalid_token"
    assert message in decision.body["error_description"]
    assert 'error="invalid_token"' in decision.headers["WWW-Authenticate"]


def test_a_tampered_token_is_refused(snapshot: Snapshot) -> None:
    header, payload, signature = _token(snapshot).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "event.view event.create event.admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    decision = _decide(snapshot, f"{header}.{forged}.{signature}", "/api/admin")
    assert decision.status == 401


def test_a_token_from_another_key_is_refused(snapshot: Snapshot) -> None:
    from kubemint.crypto.jwt import Signer

    foreign = Signer(keys.generate("ES256"))
    now = int(time.time())
    token = foreign.sign(
        {"iss": ISSUER, "aud": CALENDAR, "scope": "event.view", "exp": now + 60, "jti": "x"}
    )
    assert _decide(snapshot, token).status == 401


def test_another_audience_s_rule_cannot_open_this_host(snapshot: Snapshot) -> None:
    """evil's rule covers the calendar host with no scopes; a token for evil's audience must
    still not pass the calendar's forward-auth, which names its own audience."""
    evil_token = _token(snapshot, aud=EVIL, scope=None)
    assert _decide(snapshot, evil_token, "/api/admin").status == 401
    # ...and asking with evil's audience only ever applies evil's own entries.
    assert _decide(snapshot, evil_token, "/api/admin", audience=EVIL).status == 200


def test_a_later_claim_on_the_audience_adds_no_entries(snapshot: Snapshot) -> None:
    """The intruder's rule for the calendar audience would cover every path with no scopes;
    the calendar namespace owns the audience, so only its entries apply."""
    assert _decide(snapshot, _token(snapshot, scope=None), "/api/other").status == 403
    assert _decide(snapshot, _token(snapshot, scope=None), "/api/admin").status == 403


def _cached(snapshot: Snapshot, token: str, tokens: VerifiedTokens, now: float) -> Any:
    return authorize(
        snapshot,
        issuer=ISSUER,
        revoked=REVOKED,
        audience=CALENDAR,
        authorization=f"Bearer {token}",
        request=OriginalRequest("GET", HOST, "/api/events"),
        now=now,
        tokens=tokens,
    )


def test_verified_tokens_are_reused_but_still_expire(snapshot: Snapshot) -> None:
    tokens = VerifiedTokens()
    now = time.time()
    token = _token(snapshot, exp=int(now) + 60)
    assert _cached(snapshot, token, tokens, now).status == 200
    assert token in tokens._claims
    assert _cached(snapshot, token, tokens, now + 1).status == 200
    expired = _cached(snapshot, token, tokens, now + 60 + EXPIRY_LEEWAY + 1)
    assert (expired.status, expired.body["error_description"]) == (401, "token expired")


def test_the_cache_forgets_everything_when_the_snapshot_changes(snapshot: Snapshot) -> None:
    tokens = VerifiedTokens()
    token = _token(snapshot)
    assert _cached(snapshot, token, tokens, time.time()).status == 200
    keyless = replace(snapshot, keys={}, verification_keys=None)  # a compromised key deleted
    assert _cached(keyless, token, tokens, time.time()).status == 401
    assert token not in tokens._claims


def test_the_cache_is_bounded(snapshot: Snapshot) -> None:
    tokens = VerifiedTokens(size=2)
    issued = [_token(snapshot) for _ in range(3)]
    for token in issued:
        assert _cached(snapshot, token, tokens, time.time()).status == 200
    assert list(tokens._claims) == issued[1:]


def test_a_token_revoked_after_it_was_cached_is_refused_at_once(snapshot: Snapshot) -> None:
    """Revocations no longer rebuild the snapshot (so they no longer clear the verified-token
    cache): the index is consulted after the cache, on every call."""
    tokens = VerifiedTokens()
    now = time.time()
    token = _token(snapshot)
    revoked = RevocationIndex()

    def decide() -> Any:
        return authorize(
            snapshot,
            issuer=ISSUER,
            revoked=revoked,
            audience=CALENDAR,
            authorization=f"Bearer {token}",
            request=OriginalRequest("GET", HOST, "/api/events"),
            now=now,
            tokens=tokens,
        )

    assert decide().status == 200
    assert token in tokens._claims
    jti = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["jti"]
    revoked.apply("ADDED", entry_body("ns", Target(jti, int(now) + 300, None, "x")))
    refused = decide()
    assert (refused.status, refused.body["error_description"]) == (401, "the token was revoked")


# The audience (from the auth URL) and the path (from the client) land in WWW-Authenticate;
# a header is latin-1 at most, so `中` there was a 500 (found by the fuzz test).


@pytest.mark.parametrize("audience", ["https://中.example", "Ā", "a\x00b\x7fc"])
def test_a_challenge_for_any_audience_is_ascii(snapshot: Snapshot, audience: str) -> None:
    decision = _decide(snapshot, None, audience=audience)
    assert decision.status == 401
    value = decision.headers["WWW-Authenticate"]
    value.encode("ascii")  # raises if not ASCII
    assert value.startswith('Bearer realm="')
    assert "\x00" not in value


def test_an_insufficient_scope_challenge_for_a_unicode_path_is_ascii(snapshot: Snapshot) -> None:
    decision = _decide(snapshot, _token(snapshot), "/api/events/中文", method="POST")
    assert decision.status == 403
    value = decision.headers["WWW-Authenticate"]
    assert f"POST {HOST}/api/events/%E4%B8%AD%E6%96%87 needs scope event.create" in value
    value.encode("ascii")


def test_the_cache_survives_changes_that_leave_the_keys_alone(
    snapshot: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The view publishes a new snapshot for every change anywhere (another tenant's client);
    verified tokens stay cached while the keys are the same objects."""
    tokens = VerifiedTokens()
    token = _token(snapshot)
    assert _cached(snapshot, token, tokens, time.time()).status == 200

    def verify_again(*args: Any) -> Any:
        raise AssertionError("the signature was checked again")

    monkeypatch.setattr("kubemint.authz.decision.read_token", verify_again)
    other = replace(snapshot, clients=dict(snapshot.clients))  # an unrelated change
    assert _cached(other, token, tokens, time.time()).status == 200


def test_a_cached_token_is_refused_once_its_client_is_disabled(
    snapshot: Snapshot,
) -> None:
    """What the cache keeps is the signature check only: a client's standing is read from the
    current snapshot on every call (and revocation from the index)."""
    tokens = VerifiedTokens()
    token = _token(snapshot)
    assert _cached(snapshot, token, tokens, time.time()).status == 200
    client_id = next(c for c, v in snapshot.clients.items() if v.ref.name == "task-service")
    clients = dict(snapshot.clients)
    client = clients[client_id]
    clients[client_id] = replace(client, profile=replace(client.profile, disabled=True).shared())
    disabled = _cached(replace(snapshot, clients=clients), token, tokens, time.time())
    assert (disabled.status, disabled.body["error_description"]) == (401, "the client is disabled")
    # Revocation: see test_a_token_revoked_after_it_was_cached_is_refused_at_once.
