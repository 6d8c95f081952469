"""Group commit for `POST /orders`: the orders placed at the same moment share one transaction.

A transaction costs far more than the rows in it: BEGIN IMMEDIATE, the commit and the pool's
checkout and return, each through SQLAlchemy's asyncio layer, against a few µs of SQLite per
row (docs/performance.md has the figures); on PostgreSQL each statement is a round trip.
The service also has one SQLite connection, which requests would otherwise queue for one
by one. Written together, the orders waiting at that moment take the same five statements
(BEGIN, four multi-row INSERTs) and one commit, however many they are.

All or nothing still holds per order: a batch that fails (an `Idempotency-Key` raced and
another request won, or an order too large to announce) is written again one order per
transaction, so only the order at fault gets the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bus.codec import EventTooLarge
from contracts import ORDER_CREATED, CloudEvent, OrderCreated
from services.order.store import order_history, order_items, orders, outbox
from services.runtime.outbox import enqueue_many, with_trace

if TYPE_CHECKING:
    from services.runtime.service import Runtime

log = logging.getLogger(__name__)

MAX_BATCH = 64
"""Orders per transaction at most: bounds the statement size and each request's wait."""
MAX_WAITING = 1_024
"""Orders waiting for the writer at most; past it, requests wait to hand theirs over."""


@dataclass
class NewOrder:
    order: OrderCreated
    event: CloudEvent
    idempotency_key: str | None
    fingerprint: str
    written: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class OrderWriter:
    """`await write(new)` returns once the order and its event are committed, or raises."""

    def __init__(self) -> None:
        self._waiting: asyncio.Queue[NewOrder] = asyncio.Queue(MAX_WAITING)

    async def write(self, new: NewOrder) -> None:
        # The event carries the request's trace: the writer's task is not in that context.
        new.event = with_trace(new.event)
        await self._waiting.put(new)
        await new.written

    async def run(self, runtime: Runtime) -> None:
        """A background task of the order service: writes what waits, a batch at a time."""
        batch: list[NewOrder] = []
        try:
            while not runtime.stopping.is_set():
                batch = [await self._waiting.get()]
                while len(batch) < MAX_BATCH and not self._waiting.empty():
                    batch.append(self._waiting.get_nowait())
                await self._commit(runtime, batch)
        finally:
            # Shutting down: nobody will write these (uvicorn lets requests in flight finish
            # first, so this is for a shutdown that could not wait). The batch in hand may or
            # may not have committed: a client retrying with its Idempotency-Key finds out.
            stopped = RuntimeError("the order service is shutting down")
            for new in batch:
                _settle(new, stopped)
            while not self._waiting.empty():
                _settle(self._waiting.get_nowait(), stopped)

    async def _commit(self, runtime: Runtime, batch: list[NewOrder]) -> None:
        try:
            async with runtime.engine.begin() as conn:
                await store(conn, batch, runtime.settings.bus.max_event_bytes)
        except (IntegrityError, EventTooLarge) as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
            else:
                for new in batch:  # find the one at fault: each in a transaction of its own
                    await self._commit(runtime, [new])
            return
        except Exception as exc:  # noqa: BLE001 - the requests get it, the writer goes on
            for new in batch:
                _settle(new, exc)
            return
        for new in batch:
            _settle(new, None)
        assert runtime.relay is not None
        runtime.relay.wake.set()


def _settle(new: NewOrder, error: BaseException | None) -> None:
    if new.written.done():  # its request was cancelled (the client went away)
        return
    if error is None:
        new.written.set_result(None)
    else:
        new.written.set_exception(error)


async def store(conn: AsyncConnection, batch: Sequence[NewOrder], max_event_bytes: int) -> None:
    """Orders, their items, first history step and `order_created` events: multi-row INSERTs.
    Raises `EventTooLarge` for an order whose event the bus would refuse: the order is never
    written, rather than accepted and never announced."""
    await conn.execute(
        insert(orders),
        [
            {
                "order_id": str(new.order.order_id),
                "customer_id": new.order.customer_id,
                "status": "pending",
                "total": str(new.order.total),
                "currency": new.order.currency,
                "created_at": new.order.created_at,
                "idempotency_key": new.idempotency_key,
                "request_hash": new.fingerprint,
            }
            for new in batch
        ],
    )
    await conn.execute(
        insert(order_items),
        [
            {
                "order_id": str(new.order.order_id),
                "line": n,
                "sku": item.sku,
                "quantity": item.quantity,
                "unit_price": str(item.unit_price),
            }
            for new in batch
            for n, item in enumerate(new.order.items)
        ],
    )
    await conn.execute(
        insert(order_history),
        [
            {
                "order_id": str(new.order.order_id),
                "status": "pending",
                "event_id": str(new.event.id),
                "event_type": ORDER_CREATED,
                "at": new.order.created_at,
            }
            for new in batch
        ],
    )
    events = [(ORDER_CREATED, new.event) for new in batch]
    await enqueue_many(conn, outbox, events, max_bytes=max_event_bytes)
