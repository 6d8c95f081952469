"""Process logging: readable lines in a terminal, one JSON object per line otherwise.

`ORDERBUS_LOG_FORMAT` (`auto`, `json`, `text`): `auto` writes text when stderr is a terminal
and JSON when it is a pipe or a file (containers, log shippers). The per-event fields
(`bus.logfields.FIELDS`: event id, type, service, instance, attempt, correlation id, ...)
become JSON keys, or trail the text line. Nothing but the message, those fields and an
exception's traceback is written, and no message carries a secret (URLs are redacted where
they are logged).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from bus.logfields import FIELDS

LogFormat = Literal["auto", "json", "text"]
NOISY = ("aiokafka", "aio_pika", "aiormq", "nats", "faststream", "bus.faststream", "httpx")
"""The drivers' per-connection chatter is noise at INFO."""


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        name: getattr(record, name) for name in FIELDS if getattr(record, name, None) is not None
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


def configure_logging(log_format: LogFormat = "auto", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format, sys.stderr))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
