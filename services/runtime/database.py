"""One async SQLAlchemy engine per service database: SQLite by default, PostgreSQL by URL.

Each service declares its tables (SQLAlchemy Core) on a `MetaData` of its own, so services
that share a process still keep separate databases.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from sqlalchemy import DateTime, Select, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator

from services.runtime import sqlite_inline

READER = "orderbus_reader"
"""The execution option by which `reading` marks a connection: on SQLite its transaction
begins deferred; the metrics count it as a read."""


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC that comes back time-zone aware on every database (SQLite
    drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return value
        if value.tzinfo is None:
            raise ValueError("naive datetime: store UTC-aware timestamps only")
        # SQLite keeps the wall time and drops the zone: it must be UTC's.
        return value.astimezone(UTC) if value.utcoffset() else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, pool_size=10)
    if parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # Replicas of a service share its SQLite file: wait for the write lock, don't fail.
    # One connection per process: every writing transaction is BEGIN IMMEDIATE (below), so
    # a second connection could only wait for the write lock, in SQLite's busy handler,
    # which sleeps in steps of up to 100 ms: with a pool of several, requests slept on each
    # other (docs/performance.md, "What was optimised"); one connection makes them queue in
    # the pool instead, in order, without sleeping (reads too, behind the process's own
    # writes). Replicas in other processes hold the lock at times: that wait is an asyncio
    # sleep, as SQLite runs on the event loop's thread (sqlite_inline).
    # Any SQLite URL (`sqlite://`, or `sqlite+aiosqlite://` as older set-ups name it) runs
    # on the inline driver.
    engine = create_async_engine(
        parsed.set(drivername=f"sqlite+{sqlite_inline.SQLiteDialect_inline.driver}"),
        pool_size=1,
        max_overflow=0,
        pool_timeout=60,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        # NORMAL, not the default FULL: in WAL mode a commit then survives any crash of the
        # process (every test that kills a service relies on that) and only a power loss or
        # an OS crash may roll back the last transactions. It saves an fsync per commit (on
        # every order, relay mark and inbox row). PostgreSQL, the production database, is
        # unaffected.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=0")  # waited for in sqlite_inline, not here
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that reads, then writes, fails at once with "database is
        # locked" if another process wrote meanwhile. IMMEDIATE takes the write lock up front
        # and waits for it: replicas are serialised instead of failed. A reader's (`reading`)
        # needs no lock: in WAL mode it reads the last commit while another process writes.
        reader = connection.get_execution_options().get(READER, False)
        connection.exec_driver_sql("BEGIN" if reader else "BEGIN IMMEDIATE")

    return engine


@contextlib.asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection to read with; write in `engine.begin()`. On SQLite its transaction is
    deferred: it neither waits for another process's write lock nor holds it, so replicas'
    reads, an idle relay's look and the readiness probe never queue behind another
    process's writes. Reads only: nothing stops a write here, and on SQLite a write after a
    read fails for good once another process has written in between."""
    async with engine.connect() as conn:
        await conn.execution_options(**{READER: True})
        yield conn


async def one_or_404(engine: AsyncEngine, query: Select[Any], missing: str) -> dict[str, Any]:
    """The single row `query` selects, as a dict; HTTP 404 saying `missing` if there is none."""
    async with reading(engine) as conn:
        row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise HTTPException(404, detail=missing)
    return dict(row)


READY_TIMEOUT_S = 2.0
"""How long `/ready` waits for the database's answer (as for the broker's): a database that
is frozen or cut off makes the instance not ready instead of holding the probe."""


async def reachable(engine: AsyncEngine, timeout_s: float = READY_TIMEOUT_S) -> bool:
    try:
        async with asyncio.timeout(timeout_s), reading(engine) as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure (a timeout too) means "not ready"
        return False
    return True
