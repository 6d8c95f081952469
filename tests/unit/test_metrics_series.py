"""Each count lands in its own series: the labelled series a `Metrics` keeps at hand are told
apart by metric and by every label value."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from services.runtime.database import create_engine, reading
from services.runtime.metrics import Metrics


def test_counts_and_requests_land_in_their_own_series() -> None:
    metrics = Metrics("order", "order-1")
    for _ in range(2):
        metrics.count(metrics.published, "order_created")
    for _ in range(3):
        metrics.count(metrics.consumed, "order_created")
    metrics.count(metrics.consumed, "no_such_type")
    metrics.observe_handling("order_created", 0.002)
    for status in (202, 202, 422):
        metrics.observe_request("POST", "/orders", status, 0.003)
    metrics.observe_request("BREW", "/orders", 202, 0.003)

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(
            name, {"service": "order", "instance": "order-1", **labels}
        )

    assert value("orderbus_events_published_total", type="order_created") == 2
    assert value("orderbus_events_consumed_total", type="order_created") == 3
    assert value("orderbus_events_consumed_total", type="other") == 1
    assert value("orderbus_handler_duration_seconds_count", type="order_created") == 1
    requests = "orderbus_http_requests_total"
    assert value(requests, method="POST", route="/orders", status="202") == 2
    assert value(requests, method="POST", route="/orders", status="422") == 1
    assert value(requests, method="other", route="/orders", status="202") == 1
    seconds = "orderbus_http_request_duration_seconds_count"
    assert value(seconds, method="POST", route="/orders", status="202") == 2


async def test_database_transactions_are_counted_as_reads_or_writes_with_their_statements(
    tmp_path: Path,
) -> None:
    metrics = Metrics("billing", "billing-1")
    engine = create_engine(f"sqlite:///{tmp_path}/billing.db")
    metrics.count_database_work(engine)
    try:
        async with engine.begin() as conn:  # BEGIN IMMEDIATE, then two statements
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1), (2)"))
        for _ in range(2):
            async with reading(engine) as conn:  # BEGIN, then one statement
                await conn.execute(text("SELECT n FROM t"))
    finally:
        await engine.dispose()

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(
            name, {"service": "billing", "instance": "billing-1", **labels}
        )

    assert value("orderbus_database_transactions_total", kind="write") == 1
    assert value("orderbus_database_transactions_total", kind="read") == 2
    assert value("orderbus_database_statements_total") == 3 + 2 * 2
