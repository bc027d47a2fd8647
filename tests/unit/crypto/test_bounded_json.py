"""Untrusted JSON with bounded nesting: token headers that nest deeply are malformed tokens,
never a RecursionError (finding 6 of issue 10: a 500 at forward-auth, introspection and
revocation)."""

from __future__ import annotations

import base64

import pytest

from kubemint.crypto import bounded_json, keys
from kubemint.crypto.jwks import InvalidJWKS, parse_key_document
from kubemint.crypto.jwt import InvalidJWT, decode_unverified, protected_header, verify_jwt
from kubemint.crypto.opaque import OpaqueKey, opaque_kid


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


DEEP = [b"[" * n + b"]" * n for n in (33, 900, 990, 5000, 12000)]
DEEP += [b'{"kid":"k","alg":"ES256","x":' + b"[" * 990 + b"]" * 990 + b"}"]
DEEP += [b'{"a":' * 999 + b"1" + b"}" * 999]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", 1),
        ('{"a":[1,{"b":[]}]}', 4),
        ('["[[[[", "\\"[[[[", "\\\\"]', 1),  # brackets inside strings do not count
        ("1", 0),
    ],
)
def test_depth_ignores_strings(text: str, expected: int) -> None:
    assert bounded_json.depth(text) == expected


def test_documents_within_the_limit_parse_as_json_loads_would() -> None:
    text = "[" * 32 + "]" * 32
    assert bounded_json.loads(text) == eval(text)  # noqa: S307 — a literal of lists
    assert bounded_json.loads(b'{"kid":"a[b{c","alg":"ES256"}') == {"kid": "a[b{c", "alg": "ES256"}


@pytest.mark.parametrize("raw", DEEP, ids=lambda r: f"{len(r)}B")
def test_deeper_documents_are_value_errors(raw: bytes) -> None:
    with pytest.raises(bounded_json.TooDeep):
        bounded_json.loads(raw)


def test_non_utf8_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="utf-8"):
        bounded_json.loads('{"a":1}'.encode("utf-16"))


@pytest.mark.parametrize("raw", DEEP, ids=lambda r: f"{len(r)}B")
def test_nested_headers_are_malformed_tokens_everywhere(raw: bytes) -> None:
    segment = _b64(raw)[:16000]
    assert opaque_kid("kmint_at_" + segment + ".AA.AA.AA.AA") is None
    for token, read in (
        (segment + ".AA.AA.AA.AA", protected_header),
        (segment + ".e30.AA", decode_unverified),
        (_b64(b'{"alg":"ES256"}') + "." + segment + ".AA", decode_unverified),
    ):
        with pytest.raises(InvalidJWT, match=r"malformed token|too large"):
            read(token)
    public = keys.generate("ES256").public_jwk()
    with pytest.raises(InvalidJWT, match=r"malformed token|too large"):
        verify_jwt(
            segment + ".e30.AA", [public], algorithms=["ES256"], issuer=None, audience=None, now=0
        )


def test_an_opaque_token_with_a_nested_header_for_a_real_kid_does_not_open() -> None:
    material = keys.generate("ES256")
    opaque = OpaqueKey(material)
    kid = material.kid.encode()
    header = b'{"alg":"dir","enc":"A256GCM","kid":"' + kid + b'","x":' + b"[" * 990 + b"]" * 990
    header += b"}"
    assert opaque_kid("kmint_at_" + _b64(header) + ".AA.AA.AA.AA") is None
    with pytest.raises(InvalidJWT):
        opaque.open("kmint_at_" + _b64(header) + ".AA.AA.AA.AA")
    assert opaque.open(opaque.seal({"sub": "x"})) == {"sub": "x"}


def test_a_nested_key_document_names_the_field() -> None:
    with pytest.raises(InvalidJWKS, match="jwks: JSON nested too deeply"):
        parse_key_document('{"keys":' + "[" * 5000 + "]" * 5000 + "}", "jwks")
