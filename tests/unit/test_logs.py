"""kubemint.logs: text and JSON lines naming the object, pure-JSON audit lines, and kopf's
timer chatter counted as DEBUG."""

from __future__ import annotations

import io
import json
import logging

import pytest

from kubemint import logs
from kubemint.server.responses import audit

REF = {"apiVersion": "kubemint.io/v1alpha1", "kind": "OAuth2Client", "namespace": "t", "name": "c"}


@pytest.fixture
def output(restored_logging: None) -> io.StringIO:
    """Where the configured handlers write; logging is restored afterwards."""
    return io.StringIO()


def _kopf(message: str) -> None:
    logging.getLogger("kopf.objects").info(message, extra={"k8s_ref": REF})


def test_json_lines_name_the_object_and_carry_the_exception(output: io.StringIO) -> None:
    logs.configure({"KUBEMINT_LOG_FORMAT": "json"}, output)
    _kopf("Handler 'oauth2_client' succeeded.")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("kubemint.operator").exception("it failed")
    first, second = (json.loads(line) for line in output.getvalue().splitlines())
    assert first["object"] == {"kind": "OAuth2Client", "namespace": "t", "name": "c"}
    assert first["message"] == "Handler 'oauth2_client' succeeded."
    assert (first["level"], first["logger"]) == ("INFO", "kopf.objects")
    assert "ValueError: boom" in second["exception"]
    assert "object" not in second


def test_text_lines_put_the_object_in_front(output: io.StringIO) -> None:
    logs.configure({}, output)
    _kopf("Handler 'oauth2_client' succeeded.")
    assert "INFO kopf.objects [OAuth2Client t/c] Handler 'oauth2_client' succeeded." in (
        output.getvalue()
    )


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_audit_records_are_pure_json_lines_in_either_format(output: io.StringIO, fmt: str) -> None:
    logs.configure({"KUBEMINT_LOG_FORMAT": fmt, "KUBEMINT_LOG_LEVEL": "WARNING"}, output)
    audit("token", {"client_id": "t.c", "outcome": "issued"})
    logging.getLogger(logs.AUDIT_LOGGER).info("authz %s", json.dumps({"decision": "allowed"}))
    token, authz = (json.loads(line) for line in output.getvalue().splitlines())
    assert token["audit"] == "token"
    assert (token["client_id"], token["outcome"]) == ("t.c", "issued")
    assert token["time"].endswith("Z")
    assert authz["audit"] == "authz"
    assert authz["decision"] == "allowed"


def test_timer_successes_show_only_at_debug(output: io.StringIO) -> None:
    logs.configure({}, output)
    _kopf("Timer 'signing_key_timer' succeeded.")
    _kopf("Timer 'signing_key_timer' failed with an exception and will try again in 5.0 seconds")
    assert "Timer 'signing_key_timer' succeeded." not in output.getvalue()
    assert "will try again" in output.getvalue()

    logs.configure({"KUBEMINT_LOG_LEVEL": "debug"}, output)
    _kopf("Timer 'signing_key_timer' succeeded.")
    assert "DEBUG kopf.objects [OAuth2Client t/c] Timer 'signing_key_timer' succeeded." in (
        output.getvalue()
    )


def test_a_bad_setting_names_the_variable() -> None:
    with pytest.raises(ValueError, match="KUBEMINT_LOG_FORMAT must be one of text, json"):
        logs.configure({"KUBEMINT_LOG_FORMAT": "yaml"})
    with pytest.raises(ValueError, match="KUBEMINT_LOG_LEVEL"):
        logs.configure({"KUBEMINT_LOG_LEVEL": "loud"})


EDGES = [0.0, 1.0, 1764633600.0, 1764633600.0004994, 1764633600.0005, 1764633600.9994999]
EDGES += [1764633600.9995, 1764633600.9999994, 1764633600.9999995, 1764633600.99999999]
EDGES += [1764633600.123456, 2**31 + 0.5, 4102444800.999]


@pytest.mark.parametrize("created", EDGES + [1764633600 + i * 0.0137913 for i in range(200)])
def test_the_direct_audit_line_is_the_formatters_byte_for_byte(created: float) -> None:
    handler = logs.AuditHandler(io.StringIO())
    for kind, fields in [
        ("token", json.dumps({"client_id": "t.c", "outcome": "issued", "é": "ü✓"})),
        ("revoke", json.dumps({"jti": "x"})),
        ("authz", "{}"),  # no fields: the formatter's other shape
        ("tok en", json.dumps({"a": 1})),  # a kind needing care: the formatter's way
    ]:
        record = logging.LogRecord(
            logs.AUDIT_LOGGER, logging.INFO, "(audit)", 0, kind + " %s", (fields,), None
        )
        record.created = created
        expected = handler.format(record)
        line = handler._line(kind, fields, created)
        assert line is None or line == expected
        stream = io.StringIO()
        handler.setStream(stream)
        handler.write(kind, fields, created)
        assert stream.getvalue() == expected + "\n"


def test_audit_records_still_reach_filters_and_other_handlers(output: io.StringIO) -> None:
    """The direct write is taken only while the configured handler alone would see the
    record: a filter or a second handler (a test's, an operator's) gets every record."""
    logs.configure({}, output)
    audit_log = logging.getLogger(logs.AUDIT_LOGGER)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            seen.append(record)
            return record.getMessage().find("secret-ish") < 0

    keep = Keep()
    audit_log.handlers[0].addFilter(keep)
    audit("token", {"outcome": "issued"})
    audit("token", {"reason": "secret-ish"})
    assert [json.loads(line)["outcome"] for line in output.getvalue().splitlines()] == ["issued"]
    assert len(seen) == 2
    audit_log.handlers[0].removeFilter(keep)
    other = io.StringIO()
    extra = logging.StreamHandler(other)
    audit_log.addHandler(extra)
    audit("token", {"outcome": "again"})
    assert json.loads(output.getvalue().splitlines()[-1])["outcome"] == "again"
    assert other.getvalue() == 'token {"outcome": "again"}\n'
