"""Rows that have done their job are deleted, so a service's database does not grow for ever:
outbox rows published more than `ORDERBUS_OUTBOX_RETENTION_S` ago, and inbox entries
processed more than `ORDERBUS_INBOX_RETENTION_S` ago.

An unpublished outbox row is never deleted, however old. An inbox entry is what makes a
second delivery of its event change nothing, so keep them longer than any event can come
again: a broker's redelivery is over in minutes (`BUS_RETRY_BUDGET_S`), but a replay of a
dead letter or a Kafka group reset to an old offset can bring one back days later. Business
rows (orders, invoices, reservations, notifications) are the services' own, not pruned here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from services.runtime.service import Runtime

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 300.0
BATCH = 5_000
"""Rows deleted per transaction: a short write lock at a time (SQLite has one for all)."""


async def prune(
    engine: AsyncEngine,
    outbox: Table | None,
    inbox: Table | None,
    *,
    outbox_retention_s: float,
    inbox_retention_s: float,
    now: datetime,
) -> dict[str, int]:
    """Delete what is past retention: how many rows went, per table."""
    removed: dict[str, int] = {}
    if outbox is not None:
        cutoff = now - timedelta(seconds=outbox_retention_s)
        # published_at IS NULL (not yet published) never compares below the cutoff. The
        # newest row stays: with it gone SQLite would hand its `seq` out again, and a seq
        # must never come back (rows go out in seq order; `outbox_parked` is keyed by it).
        newest = select(func.max(outbox.c.seq)).scalar_subquery()
        removed[outbox.name] = await _delete(
            engine, outbox, outbox.c.seq, (outbox.c.published_at < cutoff) & (outbox.c.seq < newest)
        )
    if inbox is not None:
        cutoff = now - timedelta(seconds=inbox_retention_s)
        removed[inbox.name] = await _delete(
            engine, inbox, inbox.c.event_id, inbox.c.processed_at < cutoff
        )
    return removed


async def _delete(
    engine: AsyncEngine, table: Table, key: ColumnElement[object], due: ColumnElement[bool]
) -> int:
    total = 0
    some = select(key).where(due).limit(BATCH).scalar_subquery()
    while True:
        async with engine.begin() as conn:
            count = (await conn.execute(delete(table).where(key.in_(some)))).rowcount
        total += count
        if count < BATCH:
            return total


async def run(runtime: Runtime, outbox: Table | None, inbox: Table | None) -> None:
    """A background task: prune every `PRUNE_EVERY_S` until shutdown."""
    settings = runtime.settings
    while not runtime.stopping.is_set():
        try:
            removed = await prune(
                runtime.engine,
                outbox,
                inbox,
                outbox_retention_s=settings.outbox_retention_s,
                inbox_retention_s=settings.inbox_retention_s,
                now=datetime.now(UTC),
            )
            if any(removed.values()):
                log.info(
                    "retention: deleted %s",
                    ", ".join(f"{n} {table} rows" for table, n in removed.items() if n),
                )
        except Exception as exc:  # noqa: BLE001 - the database is away: the next round tries
            log.warning("retention: pruning failed (%s)", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.stopping.wait(), PRUNE_EVERY_S)
