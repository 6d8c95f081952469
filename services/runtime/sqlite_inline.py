"""An aiosqlite connection that runs SQLite on the event loop's thread, not a worker thread.

aiosqlite hands every call to a thread of its own and back: SQLAlchemy makes three or four
such calls per statement (cursor, execute, fetch, close). Each hand-off wakes a thread and the
event loop, and on the busy 2-core machine it cost 100 to 150 µs, where the SQLite call itself,
in WAL mode without an fsync per commit, takes a few µs. Measured on the same machine, the same
transaction (BEGIN IMMEDIATE, INSERT, SELECT, COMMIT) through SQLAlchemy: 166-322/s through the
thread, 854-1,357/s inline. Every service spends most of its time in such transactions.

The one thing SQLite blocks on is another process's write lock (replicas of a service share
its file): the busy timeout is 0 here and a locked database is waited for with asyncio sleeps
instead (`LOCK_WAIT_S` at most, as SQLite's own busy handler would), so the loop keeps serving.
A statement that failed because the database was locked changed nothing and is run again.

This subclass replaces aiosqlite's private `_tx` queue and `_execute` (the version is pinned in
pyproject.toml; `tests/unit/test_sqlite_inline.py` checks both behaviours).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator
from functools import partial
from typing import Any, TypeVar

import aiosqlite

LOCK_WAIT_S = 30.0
"""How long a statement waits for another process's write lock before it fails."""

T = TypeVar("T")


class _RunNow:
    """Stands in for aiosqlite's queue to its worker thread (SQLAlchemy's adapter uses it
    too): a call put in it runs at once, and its future gets the outcome."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, as aiosqlite does
            if future is not None:
                future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class InlineSqlite(aiosqlite.Connection):
    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _RunNow()  # type: ignore[assignment]

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self._connect().__await__()  # there is no worker thread to start

    async def _execute(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT_S
        pause = 0.001
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if "database is locked" not in str(exc) or loop.time() >= deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)


async def connect(path: str) -> InlineSqlite:
    """A connection to the SQLite file at `path` (`:memory:` for none), for SQLAlchemy's
    `async_creator`."""
    # check_same_thread: SQLAlchemy may dispose of it from the garbage collector's thread.
    connection = InlineSqlite(partial(sqlite3.connect, path, timeout=0, check_same_thread=False))
    await connection
    return connection
