"""Token requests as `application/json` (an extension; RFC 6749 §3.2 asks for a form).

For clients migrating from providers that document JSON token requests (SuperTokens:
`{"grant_type": "client_credentials", "scope": ["a", "b"], "audience": "…"}`). The body is
one JSON object whose members are the same parameters as the form's, each a string, except
`scope`, which may also be an array of scope strings (joined with spaces, as the form
carries it). Anything else is invalid_request naming the parameter; nothing is coerced
(a number, `null` or a nested object is refused, not stringified), and a member repeated in
the object is refused as a repeated form parameter is.
"""

from __future__ import annotations

import json
from typing import Any

from kubemint.crypto import bounded_json
from kubemint.oauth.errors import InvalidRequest

JSON = "application/json"
MAX_PARAMETERS = 64  # as the form's max_num_fields
MAX_DEPTH = 2  # the object, and a scope array


def parameters(body: bytes, known: frozenset[str]) -> dict[str, str]:
    """The request's parameters from a JSON body; `known` names the parameters the
    audit log may name (anything else the caller chose stays out of it)."""
    try:
        text = body.decode("utf-8")
        if bounded_json.depth(text) > MAX_DEPTH:  # before json.loads recurses into it
            raise ValueError("too deep")
        document = json.loads(text, object_pairs_hook=_no_repeats(known)) if text else None
    except _Repeated as repeated:
        raise InvalidRequest(repeated.description, reason=repeated.reason) from None
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("malformed JSON request body") from None
    if not isinstance(document, dict):
        raise InvalidRequest("the JSON request body must be an object")
    if len(document) > MAX_PARAMETERS:
        raise InvalidRequest("too many parameters")
    form: dict[str, str] = {}
    for key, value in document.items():
        form[key] = _value(key, value, known)
    return form


def _value(key: str, value: Any, known: frozenset[str]) -> str:
    if isinstance(value, str):
        return value
    if key == "scope" and isinstance(value, list):
        if all(isinstance(item, str) and item and " " not in item for item in value):
            return " ".join(value)
        raise InvalidRequest("scope must be a string or an array of scope strings")
    shown = key[:40]
    raise InvalidRequest(
        f"parameter {shown!r} must be a string",
        reason=f"parameter {key!r} not a string" if key in known else "a parameter not a string",
    )


class _Repeated(ValueError):
    def __init__(self, description: str, reason: str) -> None:
        super().__init__(description)
        self.description, self.reason = description, reason


def _no_repeats(known: frozenset[str]) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                named = f"parameter {key!r} repeated" if key in known else ""
                raise _Repeated(
                    f"parameter {key[:40]!r} repeated", named or "a parameter is repeated"
                )
            seen[key] = value
        return seen

    return hook
