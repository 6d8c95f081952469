"""What can never be published must not stop what can: an order too large to announce is
refused at the door, and an outbox row that no broker would take is parked with its reason
while the rows behind it go out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import insert

from bus import BusSettings
from contracts import ORDER_CREATED
from contracts.catalogue import CATALOGUE
from orderbus.specs import create_app
from services.order.store import outbox
from services.runtime.outbox import enqueue
from services.runtime.settings import ServiceSettings
from tests.api.conftest import order_event
from tests.integration.conftest import Recorder

LIMIT = 1_024
TOKEN = "test-admin-token-0123456789"
FORTY_LINES = [{"sku": p.sku, "quantity": 1} for p in CATALOGUE] * 8


@pytest.fixture
def settings(settings: ServiceSettings) -> ServiceSettings:
    bus = BusSettings(backend="memory", url=settings.bus.url, max_event_bytes=LIMIT)
    return settings.model_copy(update={"bus": bus, "admin_token": SecretStr(TOKEN)})


@asynccontextmanager
async def order_service(
    settings: ServiceSettings,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app("order", settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://order") as client:
            yield app, client


async def test_an_order_too_large_to_announce_is_refused_at_the_door(
    settings: ServiceSettings, published: Recorder
) -> None:
    assert len(FORTY_LINES) >= 40
    async with order_service(settings) as (_, order):
        big = await order.post("/orders", json={"customer_id": "alice", "items": FORTY_LINES})
        assert big.status_code == 413
        [error] = big.json()["errors"]
        assert error["field"] == "items"
        assert f"the limit is {LIMIT} (BUS_MAX_EVENT_BYTES)" in error["reason"]
        assert (await order.get("/orders")).json()["total"] == 0, "nothing written"

        small = await order.post(
            "/orders", json={"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}]}
        )
        assert small.status_code == 202
        await published.wait_for_count(1)
        assert [e.subject for e, _ in published.received] == [small.json()["order_id"]]


async def test_a_row_that_can_never_be_published_is_parked_and_the_rest_go_out(
    settings: ServiceSettings, published: Recorder
) -> None:
    too_large = order_event(*[(p.sku, 1) for p in CATALOGUE] * 8)
    fine = order_event(("KB-001", 1))
    async with order_service(settings) as (app, order):
        runtime = app.state.runtime
        async with runtime.engine.begin() as conn:
            await enqueue(conn, outbox, ORDER_CREATED, too_large)  # written by an older version
            await conn.execute(
                insert(outbox),
                {
                    "event_id": str(uuid.uuid4()),
                    "topic": ORDER_CREATED,
                    "payload": '{"not": "an event"',
                    "created_at": datetime.now(UTC),
                },
            )
            await enqueue(conn, outbox, ORDER_CREATED, fine)
        runtime.relay.wake.set()

        await published.wait_for_count(1)
        assert [e.id for e, _ in published.received] == [fine.id]

        admin = {"Authorization": f"Bearer {TOKEN}"}
        assert (await order.get("/outbox/parked")).status_code == 401
        listing = (await order.get("/outbox/parked", headers=admin)).json()
        assert listing["count"] == 2
        first, second = listing["parked"]
        assert first["event_id"] == str(too_large.id)
        assert f"the limit is {LIMIT} (BUS_MAX_EVENT_BYTES)" in first["reason"]
        assert first["bytes"] > LIMIT
        assert second["reason"].startswith("not a valid CloudEvent")
        metrics = (await order.get("/metrics")).text
        assert 'orderbus_outbox_parked{instance="' in metrics
        parked_line = next(
            line for line in metrics.splitlines() if line.startswith("orderbus_outbox_parked{")
        )
        assert parked_line.endswith(" 2.0")
