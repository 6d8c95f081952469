"""The database goes away under a subscriber for longer than a few quick retries, and comes
back: every event that arrived meanwhile is handled once, none is dead-lettered.

Billing runs in-process on the memory bus with a PostgreSQL database of the test's own. The
outage is that database refusing connections (`ALLOW_CONNECTIONS false`, its sessions
terminated), as while its server restarts, without touching the shared server.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from bus import BusSettings, create_bus
from bus.backends.memory import bus as memory
from contracts import ORDER_CREATED
from orderbus.specs import create_app
from services.billing.settings import BillingSettings
from services.runtime.settings import ServiceSettings
from tests.api.conftest import order_event
from tests.polling import eventually

pytestmark = pytest.mark.timeout(120)

EVENTS = 20
OUTAGE_S = 10.0
"""Longer than a fixed five quick attempts (about 3 s) lasted; a restart can take this."""


async def test_a_database_restart_sends_nothing_to_the_dead_letters(
    postgres_database: Callable[[str], Awaitable[str]],
    postgres_admin_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = await postgres_database("")
    name = url.rsplit("/", 1)[1]
    bus = BusSettings(backend="memory", url=f"memory://{uuid.uuid4().hex[:8]}")
    settings = ServiceSettings(data_dir=tmp_path, bus=bus, instance_id="billing-1")
    admin = await asyncpg.connect(postgres_admin_url)
    publisher = create_bus(bus)
    app = create_app("billing", settings, own=BillingSettings(database_url=url))
    caplog.set_level(logging.WARNING, logger="bus")
    try:
        await publisher.start()
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://billing") as billing:
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    name,
                )
                down_at = asyncio.get_running_loop().time()
                events = [order_event(("KB-001", 1)) for _ in range(EVENTS)]
                for event in events:
                    await publisher.publish(ORDER_CREATED, event)

                def retried() -> set[str]:
                    return {
                        str(e.id)
                        for e in events
                        for r in caplog.records
                        if "retrying in" in r.getMessage() and str(e.id) in r.getMessage()
                    }

                async def all_failed() -> bool | None:
                    return True if len(retried()) == EVENTS else None

                await eventually(all_failed, within_s=30)
                # The outage itself lasts OUTAGE_S, whatever the events do meanwhile.
                left = OUTAGE_S - (asyncio.get_running_loop().time() - down_at)
                await asyncio.sleep(max(0.0, left))
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

                async def all_handled() -> int | None:
                    done = 0
                    for event in events:
                        rows = await billing.get("/processed", params={"order_id": event.subject})
                        done += len(rows.json()["processed"]) if rows.status_code == 200 else 0
                    return done if done == EVENTS else None

                assert await eventually(all_handled, within_s=90) == EVENTS
                assert memory.dead_letters(bus.resolved_url, "billing") == []
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        await publisher.close()
