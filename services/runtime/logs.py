"""Process logging: readable lines in a terminal, one JSON object per line otherwise.

`ORDERBUS_LOG_FORMAT` (`auto`, `json`, `text`): `auto` writes text when stderr is a terminal
and JSON when it is a pipe or a file (containers, log shippers). The per-event fields
(`bus.logfields.FIELDS`: event id, type, service, instance, attempt, correlation id, ...)
and a request's (`HTTP_FIELDS`) become JSON keys, or trail the text line. Every line of a
service instance names its `service` and `instance` (`bind_instance`), also where several
instances share a process (`orderbus up` on the embedded bus): the names live in a context
variable, which each instance's tasks inherit. Nothing but the message, those fields and an
exception's traceback is written, and no message carries a secret (URLs are redacted where
they are logged).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from bus.logfields import FIELDS

LogFormat = Literal["auto", "json", "text"]
NOISY = (
    "alembic",
    "aiokafka",
    "aio_pika",
    "aiormq",
    "nats",
    "faststream",
    "bus.faststream",
    "httpx",
)
"""The drivers' per-connection chatter is noise at INFO."""


HTTP_FIELDS = ("http_method", "http_path", "http_status", "duration_ms")
"""The fields of a request's line (`services.runtime.access`)."""
ALL_FIELDS = FIELDS + HTTP_FIELDS

_instance: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "orderbus_log_instance", default=None
)


def bind_instance(service: str, instance: str) -> None:
    """Name `service` and `instance` on every line logged from this context and the tasks
    started from it."""
    _instance.set((service, instance))


def instance_context(service: str, instance: str) -> contextvars.Context:
    """A copy of the current context naming `service` and `instance`: run an instance's
    server in it (`asyncio.create_task(..., context=...)`)."""
    context = contextvars.copy_context()
    context.run(bind_instance, service, instance)
    return context


class InstanceFilter(logging.Filter):
    """Adds the bound `service` and `instance` to a record that does not name them."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _instance.get()
        if bound is not None:
            if getattr(record, "service", None) is None:
                record.service = bound[0]
            if getattr(record, "instance", None) is None:
                record.instance = bound[1]
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        name: getattr(record, name)
        for name in ALL_FIELDS
        if getattr(record, name, None) is not None
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if not fields:
            return text
        first, newline, rest = text.partition("\n")
        pairs = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{first} [{pairs}]{newline}{rest}"


def formatter(log_format: LogFormat, stream: Any = None) -> logging.Formatter:
    stream = stream if stream is not None else sys.stderr
    if log_format == "auto":
        log_format = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(log_format: LogFormat = "auto", level: int | str = logging.INFO) -> None:
    """One handler on the root logger, at `level` (a number, or a name such as "debug")."""
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format, sys.stderr))
    handler.addFilter(InstanceFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
