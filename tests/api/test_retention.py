"""Retention: published outbox rows and old inbox entries are deleted; an unpublished outbox
row never is, however old, nor anything younger than its retention, nor the newest outbox row
(its `seq` must never be handed out again)."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, insert, select

from services.runtime import retention
from services.runtime.database import create_engine
from services.runtime.inbox import processed_events_table
from services.runtime.outbox import outbox_table
from services.runtime.settings import ServiceSettings
from tests.api.conftest import Running
from tests.polling import eventually

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


async def test_only_what_is_done_and_past_retention_goes(tmp_path: Path) -> None:
    metadata = MetaData()
    outbox, inbox = outbox_table(metadata), processed_events_table(metadata)
    engine = create_engine(f"sqlite:///{tmp_path / 'service.db'}")
    async with engine.begin() as conn:  # a scratch table, outside any service's schema
        await conn.run_sync(metadata.create_all)

    def row(label: str, created: datetime, published: datetime | None) -> dict[str, object]:
        return {
            "event_id": str(uuid.uuid4()),
            "topic": label,
            "payload": "{}",
            "created_at": created,
            "published_at": published,
        }

    def entry(label: str, processed: datetime) -> dict[str, object]:
        return {
            "event_id": label,
            "type": "order_created",
            "order_id": None,
            "instance_id": "billing-1",
            "deliveries": 1,
            "processed_at": processed,
        }

    async with engine.begin() as conn:
        await conn.execute(
            insert(outbox),
            [
                row("published_long_ago", NOW - 3 * DAY, NOW - 3 * DAY),
                row("published_lately", NOW - 3 * DAY, NOW - DAY / 2),
                row("never_published", NOW - 30 * DAY, None),
                # The newest row stays whatever its age: SQLite would reuse its seq.
                row("newest", NOW - 3 * DAY, NOW - 3 * DAY),
            ],
        )
        await conn.execute(
            insert(inbox), [entry("old", NOW - 8 * DAY), entry("recent", NOW - 6 * DAY)]
        )
    try:
        removed = await retention.prune(
            engine,
            outbox,
            inbox,
            outbox_retention_s=DAY.total_seconds(),
            inbox_retention_s=7 * DAY.total_seconds(),
            now=NOW,
        )
        assert removed == {"outbox": 1, "processed_events": 1}
        async with engine.connect() as conn:
            topics = set((await conn.execute(select(outbox.c.topic))).scalars())
            ids = set((await conn.execute(select(inbox.c.event_id))).scalars())
        assert topics == {"published_lately", "never_published", "newest"}
        assert ids == {"recent"}
    finally:
        await engine.dispose()


@pytest.fixture
def settings(settings: ServiceSettings) -> ServiceSettings:
    return settings.model_copy(update={"outbox_retention_s": 0})


async def test_a_running_service_prunes_its_published_outbox(
    running: Running, settings: ServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "PRUNE_EVERY_S", 0.05)

    def outbox_rows() -> int:
        with sqlite3.connect(settings.data_dir / "order.db") as db:
            return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    async with running("order") as order:
        placed = [
            await order.post(
                "/orders",
                json={"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}]},
            )
            for _ in range(3)
        ]
        assert [p.status_code for p in placed] == [202, 202, 202]

        async def pruned_to_the_newest() -> bool | None:
            return True if outbox_rows() == 1 else None

        await eventually(pruned_to_the_newest)
        for answer in placed:
            assert (await order.get(f"/orders/{answer.json()['order_id']}")).status_code == 200
