"""Subscriber services in-process on the memory bus: their effects, exactly once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from bus import Bus
from bus.probes import Backlog
from contracts import ORDER_CREATED, CloudEvent
from orderbus.specs import create_app
from services.runtime.settings import ServiceSettings
from tests.api.conftest import Running, order_event
from tests.polling import eventually


async def processed_once(client: httpx.AsyncClient, event: CloudEvent) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        rows = (await client.get("/processed", params={"order_id": event.subject})).json()
        return rows["processed"][0] if rows["processed"] else None

    return await eventually(probe, within_s=10)


async def test_inventory_reserves_every_line_or_none(publisher: Bus, running: Running) -> None:
    async with running("inventory") as inventory:
        too_many = order_event(("KB-001", 2), ("LIMITED-EDITION", 6))  # only 5 in stock
        await publisher.publish(ORDER_CREATED, too_many)
        await processed_once(inventory, too_many)

        rejected = (await inventory.get(f"/reservations/{too_many.subject}")).json()
        assert rejected["status"] == "rejected"
        assert rejected["reason"] == (
            "insufficient stock for LIMITED-EDITION: wanted 6, available 5"
        )
        keyboard = (await inventory.get("/stock/KB-001")).json()
        assert keyboard["reserved"] == 0, "the keyboard line was taken back with the rejection"

        exactly_five = order_event(("LIMITED-EDITION", 5))
        await publisher.publish(ORDER_CREATED, exactly_five)
        await processed_once(inventory, exactly_five)
        assert (await inventory.get(f"/reservations/{exactly_five.subject}")).json()[
            "status"
        ] == "reserved"
        stock = (await inventory.get("/stock/LIMITED-EDITION")).json()
        assert (stock["available"], stock["reserved"]) == (0, 5)

        one_more = order_event(("LIMITED-EDITION", 1))
        await publisher.publish(ORDER_CREATED, one_more)
        await processed_once(inventory, one_more)
        assert (await inventory.get(f"/reservations/{one_more.subject}")).json()[
            "status"
        ] == "rejected"
        assert (await inventory.get("/stock/NO-SUCH")).status_code == 404


async def test_a_batch_of_orders_takes_stock_in_delivery_order(
    publisher: Bus, running: Running
) -> None:
    """Inventory takes a batch at once (`reserve`): each order every line or none, the stock
    each one leaves is what the next one sees."""
    async with running("inventory") as inventory:
        first = order_event(("LIMITED-EDITION", 3))  # 5 in stock: 2 left
        second = order_event(("LIMITED-EDITION", 3))  # more than is left: rejected
        third = order_event(("KB-001", 1), ("LIMITED-EDITION", 2))  # the last two
        fourth = order_event(("KB-001", 1), ("LIMITED-EDITION", 1))  # none left
        batch = [first, second, third, fourth]
        await publisher.publish_many([(ORDER_CREATED, e) for e in batch])
        for event in batch:
            await processed_once(inventory, event)

        async def status(event: CloudEvent) -> tuple[str, str | None]:
            found = (await inventory.get(f"/reservations/{event.subject}")).json()
            return found["status"], found["reason"]

        assert [await status(e) for e in batch] == [
            ("reserved", None),
            ("rejected", "insufficient stock for LIMITED-EDITION: wanted 3, available 2"),
            ("reserved", None),
            ("rejected", "insufficient stock for LIMITED-EDITION: wanted 1, available 0"),
        ]
        stock = (await inventory.get("/stock/LIMITED-EDITION")).json()
        assert (stock["available"], stock["reserved"]) == (0, 5)
        keyboard = (await inventory.get("/stock/KB-001")).json()
        assert keyboard["reserved"] == 1, "the fourth order's keyboard line was not taken"


async def test_a_duplicated_event_is_counted_but_billed_once(
    publisher: Bus, running: Running
) -> None:
    async with running("billing") as billing:
        event = order_event(("MN-003", 1))
        await publisher.publish(ORDER_CREATED, event)
        await publisher.publish(ORDER_CREATED, event)  # the same event id, delivered twice

        async def delivered_twice() -> dict[str, Any] | None:
            row = await processed_once(billing, event)
            return row if row["deliveries"] == 2 else None

        row = await eventually(delivered_twice, within_s=10)
        assert row["event_id"] == str(event.id)
        invoice = (await billing.get(f"/invoices/{event.subject}")).json()
        assert invoice["total"] == "219.99"
        metrics = (await billing.get("/metrics")).text
        consumed = [m for m in metrics.splitlines() if m.startswith("orderbus_events_consumed_")]
        duplicates = [m for m in metrics.splitlines() if m.startswith("orderbus_events_duplicate_")]
        assert [m.rsplit(" ", 1)[1] for m in consumed if "_total{" in m] == ["1.0"]
        assert [m.rsplit(" ", 1)[1] for m in duplicates if "_total{" in m] == ["1.0"]


async def test_handling_logs_one_line_with_the_event_fields(
    publisher: Bus, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running("billing") as billing:
        event = order_event(("MN-003", 1))
        await publisher.publish(ORDER_CREATED, event)
        await processed_once(billing, event)
    [line] = [r for r in caplog.records if getattr(r, "event_id", None) == str(event.id)]
    assert line.action == "handle"  # type: ignore[attr-defined]
    assert line.event_type == ORDER_CREATED  # type: ignore[attr-defined]
    assert line.service == "billing"  # type: ignore[attr-defined]
    assert line.attempt == 1  # type: ignore[attr-defined]
    assert line.instance.startswith("billing-")  # type: ignore[attr-defined]


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, matched on the labels given."""
    for line in metrics.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics_show_latency_lag_and_dead_letters(publisher: Bus, running: Running) -> None:
    async with running("billing") as billing:
        event = order_event(("MN-003", 1))
        await publisher.publish(ORDER_CREATED, event)
        await processed_once(billing, event)
        metrics = (await billing.get("/metrics")).text
    assert sample(metrics, "orderbus_handler_duration_seconds_count", type=ORDER_CREATED) == 1
    assert sample(metrics, "orderbus_group_lag", topic=ORDER_CREATED, service="billing") == 0
    assert sample(metrics, "orderbus_dead_letters", service="billing") == 0
    assert sample(metrics, "orderbus_probe_failures_total") is None  # never failed


async def test_a_hanging_broker_probe_does_not_hang_the_scrape(settings: ServiceSettings) -> None:
    class Hangs:
        async def backlog(self, topic: str, group: str) -> Backlog:
            await asyncio.Event().wait()  # a broker that never answers
            raise AssertionError("unreachable")

        async def close(self) -> None:
            pass

    app = create_app("billing", settings.model_copy(update={"metrics_probe_timeout_s": 0.2}))
    async with app.router.lifespan_context(app):
        app.state.runtime.probe = Hangs()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            async with asyncio.timeout(5):
                metrics = (await client.get("/metrics")).text
    assert sample(metrics, "orderbus_probe_failures_total", service="billing") == 1
