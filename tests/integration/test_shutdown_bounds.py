"""A service stops while its background loops are inside client-library calls.

redis-py, on Python 3.11, returns normally from a command whose task was cancelled as the
command completed (its writes go through `asyncio.wait_for`, which on 3.11 drops a
cancellation that lands once the inner call is done): about half the cancellations of a busy
loop vanish. A background loop that only relied on being cancelled then ran on after
shutdown, and the process never exited. Loops end on `Runtime.stopping` instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis.asyncio as redis
from fastapi import APIRouter
from sqlalchemy import MetaData

from bus import BusSettings
from contracts import CloudEvent
from services.billing.settings import BillingSettings
from services.runtime.app import build_app
from services.runtime.outbox import enqueue_many, outbox_table
from services.runtime.service import Runtime, ServiceSpec
from services.runtime.settings import ServiceSettings
from tests.integration.conftest import Names
from tests.polling import eventually

ROUNDS = 10
ROWS = 2_000


def _event(n: int) -> CloudEvent:
    return CloudEvent(type="shutdown_probe", source="/tests", subject=f"order-{n}", data={"n": n})


@pytest.mark.parametrize("backend", ["redis-streams"])
async def test_shutdown_ends_while_the_outbox_relay_is_inside_redis_calls(
    backend: str,
    backend_url: str,
    names: Names,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = names.topic()
    client = redis.from_url(backend_url)
    caplog.set_level(logging.WARNING, "services.runtime.shutdown")
    try:
        for n in range(ROUNDS):
            metadata = MetaData()
            outbox = outbox_table(metadata)
            spec = ServiceSpec(
                name="billing",
                own=BillingSettings(),
                metadata=metadata,
                routes=lambda _: APIRouter(),
                outbox=outbox,
            )
            settings = ServiceSettings(
                data_dir=tmp_path / f"round-{n}",
                bus=BusSettings(backend=backend, url=backend_url),
                activity=False,
            )
            app = build_app(spec, settings)
            runtime: Runtime = app.state.runtime
            already = await client.xlen(topic) if await client.exists(topic) else 0
            async with app.router.lifespan_context(app):
                async with runtime.engine.begin() as conn:
                    await enqueue_many(conn, outbox, [(topic, _event(i)) for i in range(ROWS)])
                assert runtime.relay is not None
                runtime.relay.wake.set()

                async def publishing(before: int = already) -> bool | None:
                    return True if await client.xlen(topic) > before else None

                await eventually(publishing, within_s=10)
            # Leaving the context ran the lifespan's shutdown, the relay in mid-batch.
            assert runtime.stopping.is_set()
        # Every round's relay returned once told to stop: none had to be waited out.
        assert "still running" not in caplog.text, caplog.text
    finally:
        await client.aclose()
