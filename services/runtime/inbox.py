"""The inbox: processed event ids stored in the same transaction as the effect.

A redelivered or duplicated event finds its id already there, changes nothing, and only
counts one more delivery. That count is what `GET /processed` shows as `deliveries`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry import context as otel_context
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bus import tracing
from bus.port import Received
from contracts import CloudEvent
from services.runtime.database import UtcDateTime, reading

log = logging.getLogger(__name__)

Effect = Callable[[AsyncConnection, Received], Awaitable[None]]
"""What a service does for an event, inside the inbox's transaction (`received.delivery.consumer`
is the instance doing it)."""
BatchEffect = Callable[[AsyncConnection, Sequence[Received]], Awaitable[None]]
"""What a service does for the new events of a batch at once, in delivery order, inside the
inbox's transaction: statements of many rows instead of one statement per event."""


def processed_events_table(metadata: MetaData) -> Table:
    if "processed_events" in metadata.tables:  # replicas in one process share the metadata
        return metadata.tables["processed_events"]
    return Table(
        "processed_events",
        metadata,
        Column("event_id", String(36), primary_key=True),
        Column("type", String(64), nullable=False),
        Column("order_id", String(64), index=True),
        Column("instance_id", String(64), nullable=False),
        Column("deliveries", Integer, nullable=False),
        Column("processed_at", UtcDateTime, nullable=False, index=True),  # for retention
    )


_TRACES: ContextVar[dict[int, str] | None] = ContextVar("orderbus_batch_traces", default=None)


def traceparent_of(received: Received) -> str | None:
    """Inside a batched handler (`Inbox.handle_batch_at_once`): the `traceparent` of
    `received`'s handling span, to stamp what it announces (`services.runtime.outbox
    .with_trace` leaves a stamped event as it is). None when nothing is traced."""
    return (_TRACES.get() or {}).get(id(received))


@functools.cache
def _insert_if_new(table: Table, dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in the dialect (SQLite, PostgreSQL), built once: a
    statement built per event cost more than SQLite executing it (docs/performance.md)."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing(index_elements=[table.c.event_id])


@functools.cache
def _insert_new_returning(table: Table, dialect: str) -> Any:
    """`_insert_if_new` that says which ids it inserted (SQLite 3.35+, PostgreSQL)."""
    return _insert_if_new(table, dialect).returning(table.c.event_id)


@functools.cache
def _count_delivery(table: Table) -> Any:
    return (
        update(table)
        .where(table.c.event_id == bindparam("b_event"))
        .values(deliveries=table.c.deliveries + 1)
    )


@dataclass(frozen=True)
class Inbox:
    engine: AsyncEngine
    table: Table
    instance_id: str
    system: str = "memory"
    """The bus's backend, for the spans of each event's handling."""

    async def handle_batch(self, batch: Sequence[Received], effect: Effect) -> list[bool]:
        """Apply `effect` once per event id, every new event of `batch` in one transaction,
        in order; return, per event, whether it was new (False: a duplicate, only counted).
        One failing effect rolls the whole batch back and raises: the bus then handles the
        events one at a time (`Bus.subscribe_batch`), each a batch of one."""
        return await self._handle(batch, self._each(effect))

    async def handle_batch_at_once(
        self, batch: Sequence[Received], effect: BatchEffect
    ) -> list[bool]:
        """`handle_batch` with one call of `effect` for all the new events of `batch`."""
        return await self._handle(batch, self._together(effect))

    def _each(self, effect: Effect) -> BatchEffect:
        async def apply(conn: AsyncConnection, news: Sequence[Received]) -> None:
            for received in news:
                with self._span(received):
                    await effect(conn, received)

        return apply

    def _together(self, effect: BatchEffect) -> BatchEffect:
        async def apply(conn: AsyncConnection, news: Sequence[Received]) -> None:
            # Each event's span covers the one call (each is parented by its own event). The
            # call runs in the context from before them: with every span open, "the span in
            # progress" would be the last event's, and an event announced for another would
            # join the wrong trace. The handler stamps each with `traceparent_of` its cause.
            outside = otel_context.get_current()
            traces: dict[int, str] = {}
            with contextlib.ExitStack() as spans:
                for received in news:
                    if (parent := spans.enter_context(self._span(received))) is not None:
                        traces[id(received)] = parent
                restore = otel_context.attach(outside)
                known = _TRACES.set(traces)
                try:
                    await effect(conn, news)
                finally:
                    _TRACES.reset(known)
                    otel_context.detach(restore)

        return apply

    def _span(self, received: Received) -> contextlib.AbstractContextManager[str | None]:
        event, delivery = received.event, received.delivery
        return tracing.handling(
            delivery.topic, delivery.group, delivery.consumer, event, delivery.attempt,
            self.system,
        )  # fmt: skip

    async def _handle(self, batch: Sequence[Received], apply: BatchEffect) -> list[bool]:
        if len(batch) == 1:
            return [await self._handle_one(batch[0], apply)]
        now = datetime.now(UTC)
        ids = [str(r.event.id) for r in batch]
        rows = [self._row(r.event, event_id, now) for r, event_id in zip(batch, ids, strict=True)]
        async with self.engine.begin() as conn:
            # One statement records every id, skipping those already there; RETURNING says
            # which were new. A replica inserting one of them at the same moment waits for our
            # transaction (PostgreSQL) or for the write lock (SQLite), then skips it.
            inserted = await conn.execute(
                _insert_new_returning(self.table, conn.dialect.name), rows
            )
            new = set(inserted.scalars())
            firsts: list[bool] = []
            seen: set[str] = set()
            news: list[Received] = []
            for received, event_id in zip(batch, ids, strict=True):
                first = event_id in new and event_id not in seen  # twice in one batch: once
                seen.add(event_id)
                firsts.append(first)
                if first:
                    news.append(received)
                else:
                    await self._count_delivery(conn, event_id)
            if news:
                await apply(conn, news)
        return firsts

    def _row(self, event: CloudEvent, event_id: str, now: datetime) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "type": event.type,
            "order_id": event.subject,
            "instance_id": self.instance_id,
            "deliveries": 1,
            "processed_at": now,
        }

    async def _handle_one(self, received: Received, apply: BatchEffect) -> bool:
        """`apply` once per event id, for a batch of one; False for a duplicate (only
        counted)."""
        event = received.event
        event_id = str(event.id)
        try:
            async with self.engine.begin() as conn:
                # Record the id first, in one statement that skips an id already there,
                # rather than a SELECT and then an INSERT: one statement less per event
                # (a round trip on PostgreSQL). The row and the effect
                # still commit or roll back together. A replica inserting the same id at the
                # same time waits for our transaction and then finds it (PostgreSQL), or
                # waited for the write lock before it began (SQLite's BEGIN IMMEDIATE).
                recorded = await conn.execute(
                    _insert_if_new(self.table, conn.dialect.name),
                    self._row(event, event_id, datetime.now(UTC)),
                )
                if recorded.rowcount == 0:
                    await self._count_delivery(conn, event_id)
                    return False
                await apply(conn, [received])
                return True
        except IntegrityError:
            # A replica handled the same event concurrently and committed first (Redis
            # pub/sub hands every replica every event): our effect rolled back with our row.
            async with self.engine.begin() as conn:
                if not await self._seen(conn, event_id):
                    raise  # a constraint of the effect itself, not a duplicate
                await self._count_delivery(conn, event_id)
            return False

    async def _seen(self, conn: AsyncConnection, event_id: str) -> bool:
        query = select(self.table.c.event_id).where(self.table.c.event_id == event_id)
        return (await conn.execute(query)).first() is not None

    async def _count_delivery(self, conn: AsyncConnection, event_id: str) -> None:
        await conn.execute(_count_delivery(self.table), {"b_event": event_id})

    async def processed(
        self, order_id: str | None, limit: int, offset: int = 0
    ) -> list[dict[str, Any]]:
        query = (
            select(self.table)
            .order_by(self.table.c.processed_at.desc(), self.table.c.event_id)
            .limit(limit)
            .offset(offset)
        )
        if order_id is not None:
            query = query.where(self.table.c.order_id == order_id)
        async with reading(self.engine) as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [dict(row) for row in rows]
