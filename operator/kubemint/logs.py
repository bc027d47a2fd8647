"""Log set-up shared by both processes: text or JSON lines (KUBEMINT_LOG_FORMAT), a level
(KUBEMINT_LOG_LEVEL), the Kubernetes object a record is about, and the audit stream as
pure JSON lines.

kopf logs through per-object adapters that attach the object's reference to each record
(`k8s_ref`); a plain format drops it, so "Handler 'oauth2_client' succeeded." named no
object. Both formats here restore it, as kopf's own formatters do: text as a
`[Kind namespace/name]` prefix, JSON as an `object` field.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import math
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
AUDIT_LOGGER = "kubemint.audit"
TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"

QUIET_HANDLERS = ("observe_deleted",)
"""kopf handlers whose every success is chatter, not news (besides every timer's)."""


def _setting(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip()
    wanted = value.upper() if allowed is LEVELS else value.lower()
    if wanted not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return wanted


def _object(record: logging.LogRecord) -> dict[str, str] | None:
    ref = getattr(record, "k8s_ref", None)
    if not isinstance(ref, Mapping) or not ref.get("name"):
        return None
    return {k: str(ref[k]) for k in ("kind", "namespace", "name") if ref.get(k)}


def _time(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """One line per record, the object it is about in front of the message."""

    def __init__(self) -> None:
        super().__init__(TEXT)

    def format(self, record: logging.LogRecord) -> str:
        ref = _object(record)
        if ref is not None:
            where = f"{ref['namespace']}/{ref['name']}" if "namespace" in ref else ref["name"]
            record = copy.copy(record)  # other handlers see the record as it was
            record.msg = f"[{' '.join(filter(None, (ref.get('kind'), where)))}] {record.msg}"
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, object, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = _object(record)
        if ref is not None:
            line["object"] = ref
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class AuditFormatter(logging.Formatter):
    """An audit record (`<kind> %s` with its fields as a JSON object, from
    kubemint.server.responses.audit) as one JSON object: time, `audit` (the kind) and the
    fields. The fields arrive encoded, so they are spliced in, not parsed again."""

    def format(self, record: logging.LogRecord) -> str:
        kind = str(record.msg).split(" ", 1)[0]
        head = json.dumps({"time": _time(record), "audit": kind})
        args = record.args if isinstance(record.args, tuple) else ()
        fields = args[0] if len(args) == 1 and isinstance(args[0], str) else ""
        if fields.startswith("{") and fields.endswith("}") and fields != "{}":
            return head[:-1] + ", " + fields[1:]
        return json.dumps({"time": _time(record), "audit": kind, "message": record.getMessage()})


class AuditHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The audit stream's handler (AuditFormatter lines). `write` puts one line out from the
    kind and its encoded fields without making a LogRecord: the token endpoint writes one per
    request, and a record (process, thread, caller fields) plus `Formatter.format` cost about
    as much as signing an ES256 token. The bytes are exactly what handling the record would
    write (tests/unit/test_logs.py compares them); `kubemint.server.responses.audit` takes
    this path only while nothing else (a filter, another handler or formatter) would see
    the record."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.setFormatter(AuditFormatter())
        self._second: tuple[int, str] = (-1, "")  # the last whole second, formatted

    def direct(self) -> bool:
        """Whether `write` is what handling a record would do."""
        return (
            not self.filters
            and self.level <= logging.INFO
            and type(self.formatter) is AuditFormatter
        )

    def write(self, kind: str, fields: str, created: float) -> None:
        line = self._line(kind, fields, created)
        if line is None:  # not the common shape: the formatter's own way
            self.handle(_audit_record(kind, fields, created))
            return
        with self.lock:  # type: ignore[union-attr]  # StreamHandler always has one
            try:
                self.stream.write(line + self.terminator)
                self.flush()
            except RecursionError:
                raise
            except Exception:
                self.handleError(_audit_record(kind, fields, created))

    def _line(self, kind: str, fields: str, created: float) -> str | None:
        """AuditFormatter.format of the record, for a kind needing no JSON escapes and
        fields that are a non-empty JSON object; None otherwise."""
        if not (fields.startswith("{") and fields.endswith("}") and fields != "{}"):
            return None
        if not kind.isidentifier() or not kind.isascii():
            return None
        # datetime.fromtimestamp's rounding (half-even to the microsecond), then isoformat's
        # truncation to milliseconds; the date and time of day are formatted once a second.
        frac, whole = math.modf(created)
        micros = round(frac * 1e6)
        if micros >= 1_000_000 or micros < 0:
            return None  # rounds into the next second (or before 1970): the slow way
        second = int(whole)
        cached, prefix = self._second
        if cached != second:
            moment = datetime.datetime.fromtimestamp(second, datetime.UTC)
            prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (second, prefix)
        return f'{{"time": "{prefix}.{micros // 1000:03d}Z", "audit": "{kind}", {fields[1:]}'


def _audit_record(kind: str, fields: str, created: float) -> logging.LogRecord:
    record = logging.LogRecord(
        AUDIT_LOGGER, logging.INFO, "(audit)", 0, kind + " %s", (fields,), None
    )
    record.created = created
    return record


class QuietKopf(logging.Filter):
    """kopf's per-run success lines of timers (one per object per interval: most of the
    operator's log at rest) count as DEBUG: shown only when the level is DEBUG."""

    def __init__(self, debug: bool) -> None:
        super().__init__()
        self.debug = debug

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not record.name.startswith("kopf."):
            return True
        message = str(record.msg)
        quiet = message.endswith(" succeeded.") and (
            message.startswith("Timer '")
            or any(message.startswith(f"Handler '{h}'") for h in QUIET_HANDLERS)
        )
        if not quiet:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.debug


def configure(env: Mapping[str, str] = os.environ, stream: TextIO | None = None) -> str:
    """Set the root logger up for this process (writing to `stream`, default stderr);
    returns the format. Audit records get a handler of their own (pure JSON in either
    format) and skip the root's."""
    stream = stream or sys.stderr
    fmt = _setting(env, "KUBEMINT_LOG_FORMAT", "text", FORMATS)
    level = _setting(env, "KUBEMINT_LOG_LEVEL", "INFO", LEVELS)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(QuietKopf(debug=level == "DEBUG"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    audit = logging.getLogger(AUDIT_LOGGER)
    audit_handler = AuditHandler(stream)
    audit.handlers[:] = [audit_handler]
    audit.propagate = False
    audit.setLevel(logging.INFO)  # the audit trail is not log chatter: no level silences it
    # urllib3 logs every connection retry; kubemint reports lost connections itself.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    return fmt
