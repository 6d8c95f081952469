"""One async SQLAlchemy engine per service database: SQLite by default, PostgreSQL by URL.

Each service declares its tables (SQLAlchemy Core) on a `MetaData` of its own, so services
that share a process still keep separate databases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from sqlalchemy import DateTime, Select, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator

from services.runtime import sqlite_inline

NAIVE = "naive datetime: store UTC-aware timestamps only"


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that comes back time-zone aware on every database (SQLite drops it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(NAIVE)
        return value

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # SQLite keeps a timestamp as text. SQLAlchemy's own processor formats it in Python,
        # field by field; `isoformat` writes the same text (`2026-12-07 19:47:01.633115`, so
        # stored rows and new ones compare as before) in C, and in UTC whatever the zone.
        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError(NAIVE)
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

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
    # One connection per process: every transaction here is BEGIN IMMEDIATE (below), so a
    # second connection could only wait for the write lock, in SQLite's busy handler, which
    # sleeps in steps of up to 100 ms: with a pool of several, requests slept on each other
    # (docs/performance.md, "What was optimised"); one connection makes them queue in the
    # pool instead, in order, without sleeping. Replicas in other processes hold the lock at
    # times: that wait is an asyncio sleep, as SQLite runs on the event loop's thread
    # (sqlite_inline).
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
        # and waits for it: replicas are serialised instead of failed.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


async def one_or_404(engine: AsyncEngine, query: Select[Any], missing: str) -> dict[str, Any]:
    """The single row `query` selects, as a dict; HTTP 404 saying `missing` if there is none."""
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise HTTPException(404, detail=missing)
    return dict(row)


READY_TIMEOUT_S = 2.0
"""How long `/ready` waits for the database's answer (as for the broker's): a database that
is frozen or cut off makes the instance not ready instead of holding the probe."""


async def reachable(engine: AsyncEngine, timeout_s: float = READY_TIMEOUT_S) -> bool:
    try:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure (a timeout too) means "not ready"
        return False
    return True
