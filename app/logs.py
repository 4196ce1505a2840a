"""Structured log lines: ``key=value`` text (default) or JSON lines, each carrying the request id.

Every record of the service is one line: time, level, logger, message, then the record's structured fields
(whatever a call passed as ``extra={...}``) and the id of the request being served, if any. The access log
(`app.middleware.ObservabilityMiddleware`, logger ``app.access``) is one such line per request::

    2025-01-01T12:00:00.123Z INFO app.access request method=POST route=/predict/{model} status=200 \
duration_ms=0.84 model=mf request_id=6f1c...

What is never logged: request or response bodies, query strings, raw paths (they carry user ids: the route
template is logged instead), client addresses, header values other than the request id, and the admin API key.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from typing import Any, Literal

LogFormat = Literal["text", "json"]

# The id of the request being served: set by the middleware for the duration of one request, read by the
# formatters, so a line logged anywhere while serving it names it.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# An incoming X-Request-ID is kept only if it is short and made of characters safe in a log line, a header and
# JSON (a UUID, a W3C trace id, "Root=1-5759e988-bd862e3f" all qualify); anything else is replaced.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._~:+=/-]{1,128}")
# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a structured field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_BARE_VALUE = re.compile(r"[^\s\"=\\]+")


class _RequestIds:
    """Fresh request ids: 32 hex digits, a random per-process prefix and a counter.

    Unique across workers and restarts (the 64-bit prefix is drawn from the OS at start and again in a forked
    child) and ~10x cheaper than ``uuid4().hex``, which reads the OS random source on every request. The ids
    are opaque labels for correlating log lines, not secrets: nothing may rely on them being unguessable.
    """

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


new_request_id = _RequestIds()


def accepted_request_id(value: str | None) -> str:
    """`value` if it is an acceptable request id, else a fresh one."""
    if value is not None and REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return new_request_id()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
    request_id = request_id_var.get()
    if request_id is not None:
        fields.setdefault("request_id", request_id)
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class KeyValueFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger> <message> key=value ...``; values with spaces or quotes are quoted."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name, record.getMessage()]
        parts += [f"{k}={_value(v)}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the structured fields, and exc (a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _value(value: object) -> str:
    text = str(value)
    return text if _BARE_VALUE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def configure_logging(fmt: LogFormat) -> None:
    """Send the service's lines to stderr in `fmt`, unless the host (pytest, a ``--log-config``) already
    configured the root logger. The service's own INFO lines are kept, other libraries' INFO is not."""
    logging.getLogger("app").setLevel(logging.INFO)
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root.addHandler(handler)
