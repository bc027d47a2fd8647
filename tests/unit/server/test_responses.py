"""The hot path's JSON responses are Starlette's and its audit lines logging's, byte for byte."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.responses import JSONResponse

from kubemint.server.metrics import Metrics
from kubemint.server.responses import JSON, NoStoreJSON, audit

SERVER_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"  # kubemint.server.main's

CONTENTS: list[Any] = [
    {"access_token": "eyJ" + "a" * 600, "token_type": "Bearer", "expires_in": 900},
    {"error": "invalid_client", "error_description": "client authentication failed"},
    {"é": "ünïcode ✓", "nested": {"list": [1, 2.5, None, True, "x"]}, "empty": {}},
    [],
]


@pytest.mark.parametrize("content", CONTENTS)
def test_json_responses_are_starlettes_byte_for_byte(content: Any) -> None:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    ours, theirs = JSON(content, headers=headers), JSONResponse(content, headers=headers)
    assert ours.body == theirs.body
    assert ours.raw_headers == theirs.raw_headers


@pytest.mark.parametrize("content", CONTENTS)
def test_token_responses_are_starlettes_with_no_store_byte_for_byte(content: Any) -> None:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    ours, theirs = NoStoreJSON(content), JSONResponse(content, headers=headers)
    assert (ours.status_code, ours.body, ours.background) == (200, theirs.body, None)
    assert ours.raw_headers == theirs.raw_headers
    assert ours.headers["cache-control"] == "no-store"


def test_json_responses_never_write_nan_which_is_not_json() -> None:
    # Starlette refuses NaN; orjson writes null. Either way no `NaN` token reaches a parser.
    with pytest.raises(ValueError, match="JSON compliant"):
        JSONResponse({"x": float("nan")})
    assert json.loads(JSON({"x": float("nan"), "y": float("inf")}).body) == {"x": None, "y": None}


def test_json_responses_carry_what_orjson_refuses() -> None:
    # A federated token's claims may hold an integer beyond 64 bits (introspection echoes it).
    content = {"big": 2**70, "n": -(2**64)}
    assert JSON(content).body == JSONResponse(content).body


@pytest.fixture
def audit_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(SERVER_FORMAT))
    logger = logging.getLogger("kubemint.audit")
    level, logger.level = logger.level, logging.INFO
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_an_audit_line_is_what_logger_info_would_write(audit_stream: io.StringIO) -> None:
    fields = {"grant_type": "client_credentials", "client_id": "tasks.app", "outcome": "issued"}
    audit("token", fields)
    logging.getLogger("kubemint.audit").info("token %s", json.dumps(fields))
    ours, theirs = audit_stream.getvalue().splitlines()
    # Same line but for the timestamp (asctime): level, logger name and message.
    assert ours.split(" ", 2)[2] == theirs.split(" ", 2)[2]
    assert ours.split(" ", 2)[2] == f"INFO kubemint.audit token {json.dumps(fields)}"


def test_no_audit_line_below_the_configured_level(audit_stream: io.StringIO) -> None:
    logging.getLogger("kubemint.audit").setLevel(logging.WARNING)
    audit("token", {"outcome": "issued"})
    assert audit_stream.getvalue() == ""


def test_token_outcomes_count_like_labelled_children() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.token_outcome("client_credentials", "issued")
    metrics.token_outcome("client_credentials", "invalid_client")
    sample = metrics.registry.get_sample_value
    labels = {"grant_type": "client_credentials"}
    assert sample("kubemint_tokens_total", {**labels, "outcome": "issued"}) == 3
    assert sample("kubemint_tokens_total", {**labels, "outcome": "invalid_client"}) == 1
