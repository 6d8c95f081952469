"""Timestamps on SQLite: stored in UTC as fixed-width text, which SQL compares in time order
(a claim's `claimed_until < :now`), and read back time-zone aware."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import StatementError

from services.runtime.database import UtcDateTime, create_engine

WHEN = [
    datetime(2026, 12, 7, 19, 47, 1, 633115, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: six digits all the same
    datetime(999, 1, 1, tzinfo=UTC),  # a year of three digits: four all the same
]


def stamps() -> Table:
    return Table(
        "stamps", MetaData(), Column("n", Integer, primary_key=True), Column("at", UtcDateTime)
    )


async def test_stored_text_is_what_sqlalchemy_writes_and_comes_back_aware(tmp_path: Path) -> None:
    """SQLAlchemy's DATETIME text, fixed width: earlier rows and new ones compare in order."""
    table = stamps()
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    sqlalchemys = sqlite.DATETIME().bind_processor(sqlite.dialect())  # type: ignore[no-untyped-call]
    assert sqlalchemys is not None
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
            await conn.execute(insert(table), [{"n": n, "at": at} for n, at in enumerate(WHEN)])
            stored = (await conn.execute(text("SELECT at FROM stamps ORDER BY n"))).scalars()
            assert list(stored) == [sqlalchemys(at) for at in WHEN]
            back = (await conn.execute(select(table.c.at).order_by(table.c.n))).scalars()
            assert list(back) == WHEN
    finally:
        await engine.dispose()


async def test_a_time_of_another_zone_is_stored_in_utc(tmp_path: Path) -> None:
    table = stamps()
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    in_paris = datetime(2026, 12, 7, 20, 0, tzinfo=timezone(timedelta(hours=1)))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
            await conn.execute(insert(table), {"n": 1, "at": in_paris})
            stored = (await conn.execute(text("SELECT at FROM stamps"))).scalar_one()
            back = (await conn.execute(select(table.c.at))).scalar_one()
        assert stored == "2026-12-07 19:00:00.000000"
        assert back == in_paris
        assert back.tzinfo == UTC
    finally:
        await engine.dispose()


async def test_a_naive_time_is_refused(tmp_path: Path) -> None:
    table = stamps()
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
        with pytest.raises(StatementError, match="naive datetime"):
            async with engine.begin() as conn:
                await conn.execute(insert(table), {"n": 1, "at": datetime(2026, 12, 7, 19, 0)})
    finally:
        await engine.dispose()
