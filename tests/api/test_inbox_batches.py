"""The inbox's batch at once (`Inbox.handle_batch_at_once`, for batched handlers): one call with
the batch's new events in delivery order, duplicates only counted, and a call that fails
leaves nothing behind, neither its effects nor the ids, so each event can be handled again."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bus import Delivery, Received
from contracts import CloudEvent
from tests.integration.doomed_consumer import effects, open_inbox, processed


def received(n: int) -> Received:
    event = CloudEvent(source="/tests", type="t_inbox", data={"n": n})
    return Received(event, Delivery("t_inbox", "g", "c-1", 1))


async def test_new_events_of_a_batch_in_one_call_duplicates_counted(tmp_path: Path) -> None:
    engine, inbox = await open_inbox(str(tmp_path / "inbox.db"), "c-1")
    calls: list[list[int]] = []

    async def record(conn: AsyncConnection, news: Sequence[Received]) -> None:
        calls.append([r.event.data["n"] for r in news])
        rows = [{"event_id": str(r.event.id), "consumer": r.delivery.consumer} for r in news]
        await conn.execute(insert(effects), rows)

    try:
        first, second, third, fourth = (received(n) for n in range(4))
        assert await inbox.handle_batch_at_once([first], record) == [True]
        batch = [second, first, third, second, fourth]
        assert await inbox.handle_batch_at_once(batch, record) == [
            True, False, True, False, True
        ]  # fmt: skip
        assert calls == [[0], [1, 2, 3]]

        async def doomed(conn: AsyncConnection, news: Sequence[Received]) -> None:
            await record(conn, news)
            raise RuntimeError("the batch's handler fails after writing")

        fifth, sixth = received(4), received(5)
        with pytest.raises(RuntimeError):
            await inbox.handle_batch_at_once([fifth, sixth], doomed)
        assert await inbox.handle_batch_at_once([fifth, sixth], record) == [True, True]

        async with engine.connect() as conn:
            per_event: dict[str, int] = dict(
                (
                    await conn.execute(
                        select(effects.c.event_id, func.count()).group_by(effects.c.event_id)
                    )
                ).all()
            )
            deliveries: dict[str, int] = dict(
                (await conn.execute(select(processed.c.event_id, processed.c.deliveries))).all()
            )
        assert len(per_event) == 6
        assert set(per_event.values()) == {1}, "each effect once"
        assert deliveries[str(first.event.id)] == 2
        assert deliveries[str(second.event.id)] == 2, "twice in one batch: one effect, counted"
        assert deliveries[str(third.event.id)] == 1
    finally:
        await engine.dispose()
