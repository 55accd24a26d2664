"""SQLAlchemy's aiosqlite adapter, made to cost one trip to aiosqlite's thread per statement.

aiosqlite runs every sqlite3 call on a thread of its own; each call is a trip there and back
through a queue and the event loop (about 100-170 µs on a small VM, against 1-2 µs for the
SQLite work of a key lookup). SQLAlchemy's adapter takes three or four trips per statement
(open a cursor, execute, fetch, close) plus one for each commit, rollback and isolation-level
change, so trips, not SQL, were the cost of every SQLite operation here.

This adapter keeps SQLAlchemy, aiosqlite and the SQL as they are and changes only the trips:

- a statement is executed, fetched and its cursor closed in **one** trip;
- ``commit``/``rollback`` make no trip when no transaction is open (the pool's
  reset-on-return after an autocommit statement, or after a commit);
- the driver stays in autocommit mode (``isolation_level`` None): the engine's begin hook
  issues ``BEGIN IMMEDIATE`` itself (see ``session.py``), so the driver's own implicit
  ``BEGIN`` would only get in its way, and setting the level to what it is costs no trip.

It relies on ``aiosqlite.Connection._execute`` (queue a callable on the connection's
thread), as SQLAlchemy's own adapter relies on aiosqlite's queue; :func:`run_in_thread` is
the one place that does.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

__all__ = ["OneTripAiosqliteDbapi", "run_in_thread"]

_T = TypeVar("_T")

# What one trip brings back: description, rows, rowcount, lastrowid.
_Outcome = tuple[Any, Sequence[Any], int, int | None]


async def run_in_thread(connection: aiosqlite.Connection, work: Callable[[], _T]) -> _T:
    """Run ``work`` on ``connection``'s thread, where its ``sqlite3`` connection may be used.

    One trip however much ``work`` does: a whole transaction can run in one.
    """
    return await connection._execute(work)  # type: ignore[no-untyped-call,no-any-return]


def _execute(
    connection: sqlite3.Connection, operation: str, parameters: Sequence[Any] | None
) -> _Outcome:
    cursor = connection.cursor()
    try:
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else ()
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _executemany(
    connection: sqlite3.Connection, operation: str, seq_of_parameters: Sequence[Any]
) -> _Outcome:
    cursor = connection.cursor()
    try:
        cursor.executemany(operation, seq_of_parameters)
        return None, (), cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A DBAPI cursor whose ``execute`` does execute + fetchall + close in one trip.

    The rows are held here, so the cursor needs no driver cursor and no lock: the
    statement is one queued call, atomic with respect to other users of the connection.
    """

    __slots__ = ("_outcome",)

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # No super().__init__: it would open a driver cursor, which costs a trip.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._outcome: _Outcome = (None, (), -1, None)

    @property
    def description(self) -> Any:
        return self._outcome[0]

    @property
    def rowcount(self) -> int:
        return self._outcome[2]

    @property
    def lastrowid(self) -> Any:
        return self._outcome[3]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        """Ignored: the rows are all fetched with the statement."""

    async def _async_soft_close(self) -> None:
        """Nothing to close: the driver cursor was closed in the statement's trip."""

    def close(self) -> None:
        self._rows.clear()

    def _run(self, work: Callable[..., _Outcome], *args: Any) -> None:
        connection = cast(aiosqlite.Connection, self._connection)
        try:
            self._outcome = await_(run_in_thread(connection, lambda: work(connection._conn, *args)))
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self._rows = collections.deque(self._outcome[1])

    def execute(self, operation: Any, parameters: Any = None) -> None:
        self._run(_execute, operation, parameters)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> None:
        self._run(_executemany, operation, seq_of_parameters)


class _OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """A DBAPI connection that skips the trips that would do nothing."""

    __slots__ = ()

    _cursor_cls = _OneTripCursor  # type: ignore[assignment]  # a subclass, not the base

    @property
    def isolation_level(self) -> str | None:
        return cast(str | None, self._connection.isolation_level)

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        # "" (the driver's implicit DEFERRED BEGIN) is kept as None: see the module docstring.
        level = None if value == "" else value
        if level != self._connection.isolation_level:
            AsyncAdapt_aiosqlite_connection.isolation_level.fset(self, level)  # type: ignore[attr-defined]

    def _in_transaction(self) -> bool:
        # sqlite3 lets any thread read this flag; the connection is idle while we do.
        return self._connection._connection is not None and self._connection.in_transaction

    def rollback(self) -> None:
        if self._in_transaction():
            super().rollback()

    def commit(self) -> None:
        if self._in_transaction():
            super().commit()


class OneTripAiosqliteDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module for ``create_async_engine(..., module=...)`` on ``sqlite+aiosqlite``."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> _OneTripConnection:
        """Connect as SQLAlchemy's adapter does, and wait for aiosqlite's thread on failure."""
        creator_fn = kw.pop("async_creator_fn", None)
        if creator_fn is not None:
            return _OneTripConnection(self, cast(Any, await_(creator_fn(*arg, **kw))))
        connection = aiosqlite.connect(*arg, **kw)
        # Before aiosqlite 0.22 the connection was itself the thread.
        thread = connection if isinstance(connection, threading.Thread) else connection._thread
        thread.daemon = True  # as SQLAlchemy's adapter: never keep the process alive
        try:
            return _OneTripConnection(self, cast(Any, await_(connection)))
        except Exception:
            # On a failed connect aiosqlite stops its thread without waiting for it. If the
            # event loop closes first, the thread's answer fails and prints "Event loop is
            # closed" on stderr after the caller's own error: wait for the thread instead.
            await_(_joined(thread))
            raise


async def _joined(thread: threading.Thread, timeout: float = 1.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while thread.is_alive() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.001)
