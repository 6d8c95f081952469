"""Scrape-time gauges: how much waits in the broker for this service, and in its outbox.

Asked when Prometheus scrapes `/metrics`, never on the handler path: the probe has its own
connection, one scrape asks at a time (a concurrent one is served what the last one found),
and the whole question is bounded by `ORDERBUS_METRICS_PROBE_TIMEOUT_S`. A failure or a
timeout leaves the gauges as they were and counts `orderbus_probe_failures_total`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.database import reading

if TYPE_CHECKING:
    from services.runtime.service import Runtime

log = logging.getLogger(__name__)


async def unpublished(engine: AsyncEngine, outbox: Table) -> int:
    query = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
    async with reading(engine) as conn:
        return int((await conn.execute(query)).scalar_one())


async def parked(engine: AsyncEngine, table: Table) -> int:
    async with reading(engine) as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def refresh(runtime: Runtime, topics: Sequence[str]) -> None:
    metrics = runtime.metrics
    if metrics.refreshing.locked():
        return
    async with metrics.refreshing:
        try:
            async with asyncio.timeout(runtime.settings.metrics_probe_timeout_s):
                if runtime.probe is not None:
                    for topic in topics:
                        backlog = await runtime.probe.backlog(topic, runtime.service)
                        metrics.set_backlog(topic, backlog)
                if runtime.relay is not None:
                    metrics.set_outbox_backlog(
                        await unpublished(runtime.engine, runtime.relay.table),
                        await parked(runtime.engine, runtime.relay.parked),
                    )
        except Exception as exc:  # noqa: BLE001 - a scrape reports what it can, never fails
            metrics.probe_failed()
            # The type only: a driver's message may quote the broker URL.
            log.debug("backlog probe failed: %s", type(exc).__name__)
