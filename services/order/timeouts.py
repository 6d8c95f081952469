"""Decide the orders nobody answered: pending past `ORDER_DECISION_TIMEOUT_S`, rejected with
reason `timed out`.

A background task of every order instance looks for overdue orders a few times per timeout
and records the fact `timed_out` for each, in a transaction of its own, through the same path
as an answer (`handlers.establish`): the row is locked and its status read again there, so an
answer that arrives meanwhile, or another replica sweeping too, decides the order once. The
`order_rejected` it announces makes inventory and billing give back what they did, and an
answer that comes later finds a final order and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, select

from contracts.ids import new_id
from services.order.handlers import Cause, establish, lock_order
from services.order.lifecycle import TIMED_OUT_REASON, Fact
from services.order.store import orders
from services.runtime.database import reading
from services.runtime.service import Runtime

log = logging.getLogger(__name__)

SWEEP_MAX = 100
"""Orders decided per transaction round; the next round takes the rest at once."""
TIMEOUT_CAUSE = "order_decision_timeout"
"""The `event_type` of the history step and the fact: no event caused it."""

_OVERDUE = (
    select(orders.c.order_id)
    .where(orders.c.status == "pending", orders.c.created_at < bindparam("b_before"))
    .order_by(orders.c.created_at)
    .limit(SWEEP_MAX)
)


async def decide_overdue(runtime: Runtime, timeout_s: float, now: datetime | None = None) -> int:
    """Reject every order pending for longer than `timeout_s`; how many were decided."""
    before = (now or datetime.now(UTC)) - timedelta(seconds=timeout_s)
    decided = 0
    while True:
        async with reading(runtime.engine) as conn:
            overdue = (await conn.execute(_OVERDUE, {"b_before": before})).scalars().all()
        for order_id in overdue:
            async with runtime.engine.begin() as conn:
                order = await lock_order(conn, order_id)
                if order is None or order["status"] != "pending":
                    continue  # answered (or decided by a replica) since it was listed
                cause = Cause(str(new_id()), TIMEOUT_CAUSE, None)
                if await establish(conn, order, Fact.TIMED_OUT, TIMED_OUT_REASON, cause):
                    decided += 1
        if decided and runtime.relay is not None:
            runtime.relay.wake.set()
        if len(overdue) < SWEEP_MAX:
            return decided


async def run(runtime: Runtime, timeout_s: float) -> None:
    """A background task: sweep a few times per timeout (at least every 30 s) until shutdown.
    A sweep that fails (the database away) is logged and tried again next round."""
    every_s = min(30.0, timeout_s / 4)
    while not runtime.stopping.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every_s):
                await runtime.stopping.wait()
        if runtime.stopping.is_set():
            return
        try:
            decided = await decide_overdue(runtime, timeout_s)
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.warning("overdue orders not decided this round: %s", type(exc).__name__)
            continue
        if decided:
            log.warning("%d orders rejected: no decision within the timeout", decided)
