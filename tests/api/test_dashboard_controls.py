"""The dashboard's page, its state, and its controls: every control behind the admin token.

Apps in-process on one memory bus: billing's `/admin/fail` makes the next event fail on every
attempt until it is dead-lettered, `/admin/pause` holds events until `/admin/resume`, and the
notification service's `/dashboard/api/state` sees every instance through its activity.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bus import Bus, BusSettings
from bus.backends.memory import bus as memory
from bus.dead_letters import DeadLetter
from contracts import INSTANCE_ACTIVITY, ORDER_CREATED, CloudEvent, InstanceActivity
from orderbus.specs import create_app
from services.runtime.admin import report_signature, report_signed
from services.runtime.settings import ServiceName, ServiceSettings
from tests.api.conftest import order_event
from tests.api.test_subscribers import processed_once
from tests.polling import eventually

TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings(settings: ServiceSettings) -> ServiceSettings:
    bus = BusSettings(backend="memory", url=settings.bus.url, max_attempts=2, retry_backoff_ms=1)
    return settings.model_copy(update={"bus": bus, "admin_token": SecretStr(TOKEN)})


@asynccontextmanager
async def service(name: ServiceName, settings: ServiceSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(name, settings.model_copy(update={"instance_id": f"{name}-1"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}") as client:
            yield client


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/admin/fail", {"count": 1}),
        ("POST", "/admin/pause", {"seconds": 5}),
        ("POST", "/admin/resume", None),
        ("POST", "/admin/watch", {"seconds": 5}),
    ],
)
async def test_instance_controls_need_the_token(
    settings: ServiceSettings, method: str, path: str, body: object
) -> None:
    async with service("billing", settings) as billing:
        assert (await billing.request(method, path, json=body)).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token-0123456789"}
        assert (await billing.request(method, path, json=body, headers=wrong)).status_code == 401
        assert (await billing.request(method, path, json=body, headers=ADMIN)).status_code == 200
    async with service("billing", settings.model_copy(update={"admin_token": None})) as off:
        assert (await off.request(method, path, json=body, headers=ADMIN)).status_code == 403


@pytest.mark.parametrize("path", ["/dashboard/api/orders", "/dashboard/api/fail"])
async def test_dashboard_controls_need_the_token(settings: ServiceSettings, path: str) -> None:
    async with service("notification", settings) as notification:
        assert (await notification.post(path, json={"count": 1})).status_code == 401


async def test_placing_orders_needs_a_live_order_instance(settings: ServiceSettings) -> None:
    """The order service's port is its own setting, which notification does not read: the
    console sends orders only to an order instance it has heard from, never to a guess."""
    async with service("notification", settings) as notification:
        answer = await notification.post("/dashboard/api/orders", json={"count": 1}, headers=ADMIN)
        assert answer.status_code == 404
        assert answer.json() == {"detail": "order: no live instance of order"}


async def test_bad_control_input_names_the_field(settings: ServiceSettings) -> None:
    async with service("billing", settings) as billing:
        answer = await billing.post("/admin/fail", json={"count": -1}, headers=ADMIN)
        assert answer.status_code == 422
        assert answer.json()["errors"][0]["field"] == "count"
        answer = await billing.post("/admin/pause", json={"seconds": 10_000}, headers=ADMIN)
        assert answer.json()["errors"][0]["field"] == "seconds"


async def test_fail_next_sends_one_event_to_the_dead_letters(
    settings: ServiceSettings, publisher: Bus
) -> None:
    async with service("billing", settings) as billing:
        answer = await billing.post("/admin/fail", json={"count": 1}, headers=ADMIN)
        assert answer.json() == {"instance": "billing-1", "fail_next": 1, "paused": False}
        doomed, fine = order_event(("KB-001", 1)), order_event(("KB-001", 1))
        await publisher.publish(ORDER_CREATED, doomed)
        await publisher.publish(ORDER_CREATED, fine)
        await processed_once(billing, fine)  # the next one is not affected
        url = settings.bus.resolved_url
        letters = await eventually(lambda: _nonempty(memory.dead_letters(url, "billing")))
        assert [letter.event_id for letter in letters] == [str(doomed.id)]
        assert letters[0].attempts == 2
        assert "injected failure" in letters[0].error


async def _nonempty(items: list[DeadLetter]) -> list[DeadLetter] | None:
    return items or None


async def _true_or_none(value: bool) -> bool | None:
    return value or None


async def test_pause_holds_events_until_resume(settings: ServiceSettings, publisher: Bus) -> None:
    async with service("billing", settings) as billing:
        await billing.post("/admin/pause", json={"seconds": 60}, headers=ADMIN)
        event = order_event(("KB-001", 1))
        await publisher.publish(ORDER_CREATED, event)
        # Once billing took the event off its queue, it is held, unprocessed.
        queue = memory._hub(settings.bus.resolved_url).topics[ORDER_CREATED]["billing"].queue
        await eventually(lambda: _true_or_none(queue.empty()))
        rows = await billing.get("/processed", params={"order_id": event.subject})
        assert rows.json()["processed"] == []
        answer = await billing.post("/admin/resume", headers=ADMIN)
        assert answer.json()["paused"] is False
        await processed_once(billing, event)


async def test_the_dashboard_sees_every_instance(settings: ServiceSettings) -> None:
    async with (
        service("notification", settings) as notification,
        service("billing", settings),
    ):
        page = await notification.get("/dashboard")
        assert page.status_code == 200
        assert "<title>orderbus live</title>" in page.text
        assert (await notification.get("/dashboard/app.js")).status_code == 200
        assert (await notification.get("/dashboard/../app.py")).status_code == 404

        async def both() -> dict[str, Any] | None:
            state = (await notification.get("/dashboard/api/state")).json()
            seen = {i["instance"] for i in state["instances"]}
            return state if {"billing-1", "notification-1"} <= seen else None

        state = await eventually(both, within_s=10)
        assert state["backend"] == "memory"
        assert state["admin"] is True
        assert state["progress"]["billing"] == {"published": 0, "processed": 0}

        # The broker is asked about backlogs only while a dashboard is open (browser tests).
        assert state["backlog"] == {}


def test_scarce_orders_ask_for_the_product_with_the_least_stock() -> None:
    """The dashboard's way to show a rejected order and its compensation."""
    from contracts.catalogue import CATALOGUE
    from services.console.controls import PlaceOrders, order_body

    least = min(CATALOGUE, key=lambda p: p.initial_stock)
    scarce = order_body(PlaceOrders(scarce=True))
    assert scarce["items"] == [{"sku": least.sku, "quantity": 2}]
    assert least.initial_stock < 2 * 5  # five such orders cannot all be filled
    plenty = order_body(PlaceOrders())
    assert all(item["sku"] != least.sku for item in plenty["items"])


async def test_a_forged_activity_report_never_gets_the_token(
    settings: ServiceSettings, publisher: Bus
) -> None:
    """Anyone who can publish on the broker can send `instance_activity` naming a real instance
    and an address of their own; the dashboard's controls must not send the token there."""
    heard: list[bytes] = []

    async def listen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.append(await reader.read(65536))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    trap = await asyncio.start_server(listen, "127.0.0.1", 0)
    trap_url = f"http://127.0.0.1:{trap.sockets[0].getsockname()[1]}"
    async with (
        trap,
        service("notification", settings) as notification,
        service("billing", settings),
    ):

        async def billing(forged_handled: bool = False) -> dict[str, Any] | None:
            found = (await notification.get("/dashboard/api/state")).json()
            report = next((i for i in found["instances"] if i["instance"] == "billing-1"), None)
            if report is None or not forged_handled:
                return report
            # Both forged reports handled: refused and counted, or (unfixed) believed.
            handled = found.get("activity_refused", 0) >= 2 or report["url"] == trap_url
            return report if handled else None

        report = await eventually(billing, within_s=10)
        now = datetime.now(UTC)
        forged = {
            **report,
            "url": trap_url,
            "events": [],
            "reported_at": now.isoformat(),
            "signature": report_signature(SecretStr("another-token-0123456789"), now, "x"),
        }
        unsigned = {**forged, "signature": None}
        for data in (forged, unsigned):
            event = CloudEvent.of(
                InstanceActivity.model_validate(data),
                type=INSTANCE_ACTIVITY,
                source="/services/billing/billing-1",
            )
            await publisher.publish(INSTANCE_ACTIVITY, event)
        kept = await eventually(lambda: billing(forged_handled=True), within_s=10)
        assert kept["url"] == report["url"] != trap_url

        # The control goes to the address billing signed: in-process, nothing listens there.
        answer = await notification.post(
            "/dashboard/api/pause", json={"instance": "billing-1", "seconds": 1}, headers=ADMIN
        )
        assert answer.status_code == 502
        assert report["url"] in answer.text
        assert trap_url not in answer.text
    assert heard == []


def test_a_report_signature_binds_the_address_the_time_and_the_token() -> None:
    token, at = SecretStr(TOKEN), datetime.now(UTC)
    fields = ("billing", "billing-1", "http://127.0.0.1:8002")
    signature = report_signature(token, at, *fields)
    assert report_signed(token, signature, at, *fields)
    assert not report_signed(token, signature, at, "billing", "billing-1", "http://evil:80")
    assert not report_signed(token, signature, at + timedelta(microseconds=1), *fields)
    assert not report_signed(SecretStr("another-token-0123456789"), signature, at, *fields)
    assert not report_signed(token, None, at, *fields)
