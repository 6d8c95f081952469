"""A consumer that is killed in the middle of a batch, for the conformance suite.

`python -m tests.integration.doomed_consumer TOPIC GROUP DATABASE` (backend and URL from
`BUS_BACKEND` / `BUS_URL`) handles `TOPIC`'s events in batches through the services' inbox on
the SQLite file `DATABASE`, the effect of each event a row of `effects`. The first batch of
more than one event gets as far as half its effects inside the inbox's transaction; then
the process dies at once (`os._exit`: no close, no acknowledgement, no rollback but the
database's own), after printing that batch's event ids as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence

from sqlalchemy import Column, MetaData, String, Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bus import BusSettings, Received, create_bus
from services.runtime.database import create_engine
from services.runtime.inbox import Inbox, processed_events_table

metadata = MetaData()
effects = Table(
    "effects",
    metadata,
    Column("event_id", String(36), nullable=False),
    Column("consumer", String(64), nullable=False),
)
processed = processed_events_table(metadata)


async def open_inbox(database: str, consumer: str) -> tuple[AsyncEngine, Inbox]:
    engine = create_engine(f"sqlite:///{database}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return engine, Inbox(engine, processed, consumer)


async def record_effect(conn: AsyncConnection, received: Received) -> None:
    await conn.execute(
        insert(effects),
        {"event_id": str(received.event.id), "consumer": received.delivery.consumer},
    )


async def main(topic: str, group: str, database: str) -> None:
    engine, inbox = await open_inbox(database, "doomed")
    bus = create_bus(BusSettings(redelivery_after_ms=1_000))

    async def handle(batch: Sequence[Received]) -> None:
        if len(batch) == 1:
            await inbox.handle_batch(batch, record_effect)
            return
        print(json.dumps([str(r.event.id) for r in batch]), flush=True)
        applied = 0

        async def die_halfway(conn: AsyncConnection, received: Received) -> None:
            nonlocal applied
            if applied == len(batch) // 2:
                # A slow effect: whatever the bus sent meanwhile (an acknowledgement made too
                # early, say) has reached the broker before the process dies.
                await asyncio.sleep(0.5)
                os._exit(9)
            await record_effect(conn, received)
            applied += 1

        await inbox.handle_batch(batch, die_halfway)

    bus.subscribe_batch(topic, handle, group=group, consumer="doomed")
    await bus.start()
    print("ready", flush=True)
    await asyncio.Event().wait()  # until killed
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
