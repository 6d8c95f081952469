"""SQLite runs on the event loop's thread, and waits for another's write lock asynchronously."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from services.runtime import sqlite_inline
from services.runtime.database import create_engine, reading


@pytest.mark.parametrize("driver", ["sqlite", "sqlite+aiosqlite"])
async def test_statements_run_on_the_event_loops_thread(tmp_path: Path, driver: str) -> None:
    """Whichever driver a SQLite URL names (older set-ups say aiosqlite), it runs inline."""
    engine = create_engine(f"{driver}:///{tmp_path / 'x.db'}")
    try:
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert isinstance(raw, sqlite_inline.InlineConnection)
            raw.create_function("thread_id", 0, threading.get_ident)
            ran_on = (await conn.execute(text("SELECT thread_id()"))).scalar_one()
        assert ran_on == threading.get_ident()
    finally:
        await engine.dispose()


async def test_a_write_lock_held_elsewhere_is_waited_for_while_the_loop_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    engine = create_engine(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)  # another process, as far as SQLite knows
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (v INTEGER)"))
        holder.execute("BEGIN IMMEDIATE")

        async def write() -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))

        writing = asyncio.create_task(write())
        for _ in range(20):  # the loop goes on: these ticks run while the write waits
            await asyncio.sleep(0.01)
        assert not writing.done(), "the write did not wait for the lock"
        holder.execute("COMMIT")
        await asyncio.wait_for(writing, 5)
        assert holder.execute("SELECT v FROM t").fetchall() == [(1,)]
    finally:
        holder.close()
        await engine.dispose()


async def test_a_reader_neither_waits_for_the_write_lock_nor_takes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process writing does not hold up a read (`reading`), and a read in progress
    does not hold up another process's write: only writers queue for the write lock."""
    monkeypatch.setattr(sqlite_inline, "LOCK_WAIT_S", 0.2)  # a wait would fail, not hang
    path = tmp_path / "shared.db"
    engine = create_engine(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)  # another process
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (v INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO t VALUES (2)")  # not committed: unseen by the reader
        async with reading(engine) as conn:
            assert (await conn.execute(text("SELECT v FROM t"))).scalars().all() == [1]
            holder.execute("COMMIT")
            holder.execute("BEGIN IMMEDIATE")  # at once (timeout 0): the reader holds no lock
            holder.execute("ROLLBACK")
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
        await engine.dispose()


async def test_a_lock_held_too_long_fails_the_statement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "LOCK_WAIT_S", 0.2)
    path = tmp_path / "held.db"
    engine = create_engine(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (v INTEGER)"))
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(Exception, match="database is locked"):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await engine.dispose()
