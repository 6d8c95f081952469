"""SQLite for SQLAlchemy's asyncio engine, run on the event loop's thread with the standard
`sqlite3` driver: the `sqlite+inline` dialect (`services.runtime.database` uses it for every
`sqlite` URL, whatever driver the URL names).

A SQLite statement on a local file, in WAL mode without an fsync per commit, takes a few µs.
What costs is the way to it: aiosqlite runs each call in a thread of its own, and SQLAlchemy's
adapter for it awaits three or four such calls per statement. Here the statement runs where
it is asked for, inside the greenlet SQLAlchemy's asyncio layer already runs its sync core in;
docs/performance.md has the figures.

The one thing SQLite blocks on is another process's write lock (replicas of a service share
its file): the busy timeout is 0 and a locked database is waited for with asyncio sleeps
(`LOCK_WAIT_S` at most, as SQLite's own busy handler would), so the loop keeps serving. A
statement that failed because the database was locked changed nothing and is run again.

Two of SQLAlchemy's asyncio internals are met here (the version is locked in uv.lock;
`tests/unit/test_sqlite_inline.py` checks the behaviours): an asyncio execution must await
something, so each statement awaits a coroutine that does nothing, and a cursor must offer
`_async_soft_close` (a sqlite3 cursor holds its rows already: nothing to do).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine.url import URL
from sqlalchemy.util.concurrency import await_, in_greenlet

LOCK_WAIT_S = 30.0
"""How long a statement waits for another process's write lock before it fails."""

T = TypeVar("T")


def _waiting_out_locks(run: Callable[[], T]) -> T:
    deadline = time.monotonic() + LOCK_WAIT_S
    pause = 0.001
    while True:
        try:
            return run()
        except sqlite3.OperationalError as exc:
            if "database is locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        if in_greenlet():
            await_(asyncio.sleep(pause))  # the loop serves others while the lock is held
        else:
            time.sleep(pause)  # a sync caller (a migration's): nothing else to serve
        pause = min(pause * 2, 0.05)


async def _nothing() -> None:
    return None


def _awaited_something() -> None:
    """SQLAlchemy's asyncio layer refuses an execution that awaited nothing (it takes it for
    a sync driver used by mistake): await a coroutine that returns at once."""
    if in_greenlet():
        await_(_nothing())


class InlineCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> InlineCursor:
        _awaited_something()
        return _waiting_out_locks(lambda: super(InlineCursor, self).execute(sql, parameters))

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> InlineCursor:
        _awaited_something()
        return _waiting_out_locks(lambda: super(InlineCursor, self).executemany(sql, parameters))

    async def _async_soft_close(self) -> None:
        return None


class InlineConnection(sqlite3.Connection):
    def cursor(self, factory: Any = InlineCursor) -> Any:  # sqlite3's own signature
        return super().cursor(factory)

    def commit(self) -> None:
        _waiting_out_locks(super().commit)


class _Driver:
    """`sqlite3` as SQLAlchemy's DBAPI module, connecting with `InlineConnection`."""

    paramstyle = sqlite3.paramstyle
    sqlite_version_info = sqlite3.sqlite_version_info

    def __getattr__(self, name: str) -> Any:
        return getattr(sqlite3, name)

    def connect(self, *args: Any, **kwargs: Any) -> InlineConnection:
        connection: InlineConnection = sqlite3.connect(
            *args, **kwargs | {"factory": InlineConnection}
        )
        return connection


class SQLiteDialect_inline(SQLiteDialect_pysqlite):  # noqa: N801 - SQLAlchemy's naming
    driver = "inline"
    is_async = True
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return _Driver()

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        return pool.AsyncAdaptedQueuePool if cls._is_url_file_db(url) else pool.StaticPool

    def create_connect_args(self, url: URL) -> Any:
        args, kwargs = super().create_connect_args(url)
        # Busy timeout 0: a lock is waited for above, with the loop running. Any thread:
        # SQLAlchemy may dispose of a connection from the garbage collector's.
        kwargs.update(timeout=0, check_same_thread=False)
        return args, kwargs


registry.register("sqlite.inline", __name__, "SQLiteDialect_inline")
