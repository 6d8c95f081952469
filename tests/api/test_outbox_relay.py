"""The outbox relay: it stops when the app stops, even if an order woke it at that very moment,
and replicas sharing one outbox publish each event once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import cast

import pytest
from sqlalchemy import MetaData, Table, func, select
from sqlalchemy.event import listen, remove
from sqlalchemy.ext.asyncio import AsyncEngine

from bus import Bus, Delivery, create_bus
from contracts import CloudEvent
from services.billing.settings import BillingSettings
from services.order.settings import OrderSettings
from services.runtime.app import new_runtime
from services.runtime.database import create_engine
from services.runtime.outbox import OutboxRelay, enqueue, outbox_table
from services.runtime.service import Runtime
from services.runtime.settings import ServiceSettings, database_url
from tests.polling import eventually


@dataclass
class Scratch:
    """An outbox table of its own on the billing database, and what a probe consumer of
    `relay_test` has received."""

    table: Table
    engine: AsyncEngine
    seen: list[CloudEvent]


@pytest.fixture
async def scratch(settings: ServiceSettings) -> AsyncIterator[Scratch]:
    table = outbox_table(MetaData())
    engine = create_engine(database_url(settings, BillingSettings(), "billing"))
    async with engine.begin() as conn:  # a scratch table, outside any service's schema
        await conn.run_sync(table.metadata.create_all)
    seen: list[CloudEvent] = []

    async def record(event: CloudEvent, _: Delivery) -> None:
        seen.append(event)

    probe = create_bus(settings.bus)
    probe.subscribe("relay_test", record, group="probe", consumer="probe-1")
    await probe.start()
    try:
        yield Scratch(table, engine, seen)
    finally:
        await probe.close()
        await engine.dispose()


class IdleRelay(OutboxRelay):
    """Finds nothing to publish, and says each time it has looked."""

    def __init__(self) -> None:
        super().__init__(outbox_table(MetaData()))
        self.looked = asyncio.Event()

    async def publish_pending(self, runtime: Runtime, *, expecting_rows: bool = False) -> int:
        self.looked.set()
        return 0


async def test_a_wake_up_and_a_shutdown_at_once_still_stop_the_relay(
    settings: ServiceSettings,
) -> None:
    relay = IdleRelay()
    runtime = new_runtime("order", settings, OrderSettings(), instance="order-1")
    task = asyncio.create_task(relay.run(runtime))
    await relay.looked.wait()  # the relay goes straight on to wait for a wake-up

    relay.wake.set()  # an order committed...
    task.cancel()  # ...as the app stops

    done, _ = await asyncio.wait({task}, timeout=10)
    assert task in done, "the relay ignored its cancellation: shutdown would hang"
    assert task.cancelled()


async def test_replicas_sharing_an_outbox_publish_each_event_once(
    settings: ServiceSettings, scratch: Scratch
) -> None:
    """Two relays on one database (two replicas of a service) race for the same rows: each
    event is claimed, and so published, by one of them."""
    table, engine, seen = scratch.table, scratch.engine, scratch.seen
    billing = BillingSettings()
    relays: list[tuple[OutboxRelay, Runtime]] = []
    for instance in ("billing-1", "billing-2"):
        runtime = new_runtime("billing", settings, billing, instance=instance)
        runtime.engine, runtime.bus = engine, create_bus(settings.bus)
        await runtime.bus.start()
        relays.append((OutboxRelay(table), runtime))
    try:
        events = [CloudEvent(source="/tests", type="relay_test", data={"n": n}) for n in range(250)]
        async with engine.begin() as conn:
            for event in events:
                await enqueue(conn, table, "relay_test", event)

        async def drain(relay: OutboxRelay, runtime: Runtime, expecting_rows: bool) -> int:
            published = 0
            while await unpublished(engine, table):
                published += await relay.publish_pending(runtime, expecting_rows=expecting_rows)
            return published

        # One looks before it claims, the other claims in one statement (as a woken relay).
        counts = await asyncio.gather(
            *(drain(relay, runtime, n == 1) for n, (relay, runtime) in enumerate(relays))
        )
        assert sum(counts) == 250, counts
        await eventually(lambda: _all(seen, 250), within_s=10)
        assert sorted(e.id for e in seen) == sorted(e.id for e in events), "each event once"
    finally:
        for _, runtime in relays:
            await runtime.bus.close()


async def unpublished(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).where(table.c.published_at.is_(None))
        return int((await conn.execute(query)).scalar_one())


async def _all(seen: Sequence[object], n: int) -> bool | None:
    return True if len(seen) >= n else None


class FailsOnThird:
    """A bus whose third publish is refused (the broker went away mid-batch), and with it
    what was sent after it."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.calls = 0

    async def publish_many(
        self, events: Sequence[tuple[str, CloudEvent]], *, stored: Sequence[bytes] | None = None
    ) -> Sequence[BaseException | None]:
        outcomes: list[BaseException | None] = []
        for topic, event in events:
            self.calls += 1
            if self.calls == 3:
                return [
                    *outcomes,
                    *[ConnectionError("broker gone")] * (len(events) - len(outcomes)),
                ]
            await self.bus.publish(topic, event)
            outcomes.append(None)
        return outcomes


async def test_a_batch_failing_midway_marks_what_went_out_and_retries_the_rest(
    settings: ServiceSettings, scratch: Scratch
) -> None:
    """The relay marks a batch in one transaction: what the broker accepted before the
    failure is marked published, the rest is published on the next round, none twice."""
    table, engine, seen = scratch.table, scratch.engine, scratch.seen
    billing = BillingSettings()
    runtime = new_runtime("billing", settings, billing, instance="billing-1")
    runtime.engine, real = engine, create_bus(settings.bus)
    await real.start()
    runtime.bus = cast(Bus, FailsOnThird(real))
    relay = OutboxRelay(table)
    try:
        events = [CloudEvent(source="/tests", type="relay_test", data={"n": n}) for n in range(5)]
        async with engine.begin() as conn:
            for event in events:
                await enqueue(conn, table, "relay_test", event)
        with pytest.raises(ConnectionError):
            await relay.publish_pending(runtime)
        assert await unpublished(engine, table) == 3, "the two published are marked"
        assert await relay.publish_pending(runtime) == 3
        assert await unpublished(engine, table) == 0
        await eventually(lambda: _all(seen, 5), within_s=10)
        assert sorted(e.id for e in seen) == sorted(e.id for e in events), "each event once"
    finally:
        await real.close()


class Handing:
    """A bus that notes the stored bytes it is handed, and publishes with them."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.stored: list[bytes] = []

    async def publish_many(
        self, events: Sequence[tuple[str, CloudEvent]], *, stored: Sequence[bytes] | None = None
    ) -> Sequence[BaseException | None]:
        self.stored.extend(stored or ())
        return await self.bus.publish_many(events, stored=stored)


async def test_the_relay_publishes_each_rows_stored_bytes_as_they_are(
    settings: ServiceSettings, scratch: Scratch
) -> None:
    """A row goes out as the bytes stored, not decoded and encoded again: what a consumer gets
    is the event those bytes hold."""
    table, engine, seen = scratch.table, scratch.engine, scratch.seen
    billing = BillingSettings()
    runtime = new_runtime("billing", settings, billing, instance="billing-1")
    runtime.engine, real = engine, create_bus(settings.bus)
    await real.start()
    handing = Handing(real)
    runtime.bus = cast(Bus, handing)
    try:
        events = [CloudEvent(source="/tests", type="relay_test", data={"n": n}) for n in range(3)]
        async with engine.begin() as conn:
            for event in events:
                await enqueue(conn, table, "relay_test", event)
        async with engine.connect() as conn:
            payloads = (await conn.execute(select(table.c.payload).order_by(table.c.seq))).all()

        assert await OutboxRelay(table).publish_pending(runtime) == 3

        assert handing.stored == [payload.encode() for (payload,) in payloads]
        await eventually(lambda: _all(seen, 3), within_s=10)
        assert seen == events
    finally:
        await real.close()


async def test_an_idle_relay_takes_no_write_lock_and_a_woken_one_claims_without_looking(
    settings: ServiceSettings, scratch: Scratch
) -> None:
    """A poll that finds nothing only reads (on SQLite a write transaction would queue behind
    the replicas' writes); a relay that expects rows (a commit woke it) claims them in one
    statement, without the look."""
    table, engine, seen = scratch.table, scratch.engine, scratch.seen
    runtime = new_runtime("billing", settings, BillingSettings(), instance="billing-1")
    runtime.engine, runtime.bus = engine, create_bus(settings.bus)
    await runtime.bus.start()
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()[:2]))

    listen(engine.sync_engine, "before_cursor_execute", note)
    relay = OutboxRelay(table)
    try:
        assert await relay.publish_pending(runtime) == 0
        assert statements == ["BEGIN", "SELECT outbox.seq"], "a read, no write lock"

        events = [CloudEvent(source="/tests", type="relay_test", data={"n": n}) for n in range(3)]
        async with engine.begin() as conn:
            for event in events:
                await enqueue(conn, table, "relay_test", event)
        statements.clear()
        assert await relay.publish_pending(runtime, expecting_rows=True) == 3
        assert statements == [
            "BEGIN IMMEDIATE",
            "UPDATE outbox",  # the claim
            "BEGIN IMMEDIATE",
            "UPDATE outbox",  # the mark
        ]
        await eventually(lambda: _all(seen, 3), within_s=10)
        assert seen == events
        assert await relay.publish_pending(runtime, expecting_rows=True) == 0
    finally:
        remove(engine.sync_engine, "before_cursor_execute", note)
        await runtime.bus.close()
