"""Log format: JSON lines with the per-event fields off a terminal, readable text on one."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid

import pytest
from pydantic import ValidationError

from bus import BusSettings, Delivery, create_bus
from bus.logfields import event_fields
from contracts import CloudEvent
from services.runtime.logs import (
    InstanceFilter,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    formatter,
    instance_context,
)
from services.runtime.settings import ServiceSettings
from tests.polling import eventually

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def record(**extra: object) -> logging.LogRecord:
    made = logging.LogRecord("bus", logging.WARNING, __file__, 1, "failed %s", ("x",), None)
    made.__dict__.update(extra)
    return made


def an_event() -> CloudEvent:
    return CloudEvent(
        source="/tests",
        type="t_logs",
        data={},
        correlationid="corr-1",
        traceparent=TRACEPARENT,
    )


def test_json_line_carries_the_event_fields() -> None:
    event = an_event()
    fields = event_fields(
        "retry", event, topic="t_logs", service="billing", instance="billing-2", attempt=3
    )
    line = json.loads(JsonFormatter().format(record(**fields)))
    assert line["message"] == "failed x"
    assert line["level"] == "warning"
    assert line["logger"] == "bus"
    assert line["action"] == "retry"
    assert line["event_id"] == str(event.id)
    assert line["event_type"] == "t_logs"
    assert line["service"] == "billing"
    assert line["instance"] == "billing-2"
    assert line["attempt"] == 3
    assert line["correlation_id"] == "corr-1"
    assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert "\n" not in JsonFormatter().format(record(**fields))


def test_a_line_without_an_event_has_no_empty_fields() -> None:
    line = json.loads(JsonFormatter().format(record()))
    assert set(line) == {"time", "level", "logger", "message"}


def test_text_line_is_readable_with_the_fields_after_it() -> None:
    text = TextFormatter().format(record(action="handle", event_id="e-1", attempt=None))
    assert "failed x [action=handle event_id=e-1]" in text


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_every_line_names_the_instance_whose_task_logged_it() -> None:
    # Two instances in one process, as `orderbus up` runs them on the embedded bus.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(InstanceFilter())
    logger = logging.getLogger("tests.instances")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    async def say(message: str) -> None:
        logger.info(message)

    async def work(name: str) -> None:
        await asyncio.sleep(0)
        logger.info("started %s", name)
        await asyncio.create_task(say(f"inner {name}"))  # a task it starts inherits the names
        logger.info("working", extra={"service": "billing", "instance": "given"})

    try:
        await asyncio.gather(
            asyncio.create_task(work("a"), context=instance_context("order", "order-1")),
            asyncio.create_task(work("b"), context=instance_context("billing", "billing-2")),
        )
        logger.info("outside any instance")
    finally:
        logger.removeHandler(handler)
    lines = json_lines(stream)
    names = {(line["message"], line.get("service"), line.get("instance")) for line in lines}
    assert names == {
        ("started a", "order", "order-1"),
        ("started b", "billing", "billing-2"),
        ("inner a", "order", "order-1"),
        ("inner b", "billing", "billing-2"),
        ("working", "billing", "given"),  # a line that names its own keeps them
        ("outside any instance", None, None),
    }
    assert len(lines) == 7


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_on_a_pipe() -> None:
    assert isinstance(formatter("auto", Tty()), TextFormatter)
    assert isinstance(formatter("auto", io.StringIO()), JsonFormatter)
    assert isinstance(formatter("json", Tty()), JsonFormatter)
    assert isinstance(formatter("text", io.StringIO()), TextFormatter)


def test_log_format_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERBUS_LOG_FORMAT", "json")
    assert ServiceSettings().log_format == "json"
    monkeypatch.setenv("ORDERBUS_LOG_FORMAT", "yaml")
    with pytest.raises(ValidationError, match="ORDERBUS_LOG_FORMAT"):
        ServiceSettings()


def test_log_level_is_a_setting_and_sets_the_root_level(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings().log_level == "info"
    monkeypatch.setenv("ORDERBUS_LOG_LEVEL", "debug")
    level = ServiceSettings().log_level
    assert level == "debug"
    root = logging.getLogger()
    handlers, before = root.handlers[:], root.level
    try:
        configure_logging("json", level)
        assert root.level == logging.DEBUG
        configure_logging("json", "warning")
        assert root.level == logging.WARNING
    finally:
        root.handlers[:] = handlers
        root.setLevel(before)
    monkeypatch.setenv("ORDERBUS_LOG_LEVEL", "verbose")
    with pytest.raises(ValidationError, match="ORDERBUS_LOG_LEVEL"):
        ServiceSettings()


async def test_retry_and_dead_letter_lines_name_the_event(caplog: pytest.LogCaptureFixture) -> None:
    settings = BusSettings(
        backend="memory",
        url=f"memory://{uuid.uuid4().hex[:8]}",
        max_attempts=2,
        retry_backoff_ms=1,
    )

    async def fails(_: CloudEvent, __: Delivery) -> None:
        raise RuntimeError("boom")

    bus = create_bus(settings)
    bus.subscribe("t_logs", fails, group="billing", consumer="billing-7")
    await bus.start()
    event = an_event()
    try:
        with caplog.at_level(logging.INFO):
            await bus.publish("t_logs", event)

            async def dead_lettered() -> bool | None:
                done = any(getattr(r, "action", None) == "dead_letter" for r in caplog.records)
                return True if done else None

            await eventually(dead_lettered, within_s=5)
    finally:
        await bus.close()
    lines = [r for r in caplog.records if getattr(r, "event_id", None) == str(event.id)]
    assert [(r.action, r.attempt) for r in lines] == [("retry", 1), ("dead_letter", 2)]  # type: ignore[attr-defined]
    for line in lines:
        assert line.service == "billing"  # type: ignore[attr-defined]
        assert line.instance == "billing-7"  # type: ignore[attr-defined]
        assert line.correlation_id == "corr-1"  # type: ignore[attr-defined]
