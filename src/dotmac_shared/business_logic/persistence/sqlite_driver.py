"""SQLAlchemy's aiosqlite adapter, made to cost one trip to aiosqlite's thread per statement.

aiosqlite runs every sqlite3 call on a thread of its own; each call is a trip there and back
through a queue and the event loop, which costs far more than the SQLite work of a key
lookup. SQLAlchemy's adapter takes three or four trips per statement
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
the one place that calls it, and :class:`_TrackedConnection` the one that overrides it.

:func:`transaction` (and its coroutine form :func:`run_transaction`) goes one step further
for small write transactions (a saga state change): when the connection's thread is idle and
SQLite grants the write lock at once, the transaction runs on the event loop's thread and
makes no trip at all.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_, greenlet_spawn

__all__ = ["OneTripAiosqliteDbapi", "run_in_thread", "run_transaction", "transaction"]

_T = TypeVar("_T")

# What one trip brings back: description, rows, rowcount, lastrowid.
_Outcome = tuple[Any, Sequence[Any], int, int | None]


async def run_in_thread(connection: aiosqlite.Connection, work: Callable[[], _T]) -> _T:
    """Run ``work`` on ``connection``'s thread, where its ``sqlite3`` connection may be used.

    One trip however much ``work`` does: a whole transaction can run in one.
    """
    return await connection._execute(work)  # type: ignore[no-untyped-call,no-any-return]


def transaction(
    connection: aiosqlite.Connection,
    work: Callable[[sqlite3.Connection], _T],
    *,
    inline: bool = True,
) -> _T:
    """Run ``work`` inside ``BEGIN IMMEDIATE`` … ``COMMIT`` on ``connection``; return its result.

    For code running in SQLAlchemy's greenlet (inside ``greenlet_spawn``, where ``await_``
    works); :func:`run_transaction` is the same for a coroutine.

    A trip to aiosqlite's thread costs more than a small transaction's SQL, so with
    ``inline`` the transaction runs right here, on the event
    loop's thread, when SQLite can do it without waiting for anything:

    - the connection's thread is idle (nothing of this connection is queued or running there:
      the two threads never use the ``sqlite3`` connection at once);
    - SQLite grants the write lock at once: ``BEGIN IMMEDIATE`` is tried with a busy timeout
      of 0, so the event loop never waits for another writer;
    - the commit does not checkpoint the WAL (a checkpoint syncs files to disk and can take
      milliseconds): inline commits run with ``wal_autocheckpoint`` off, and every
      ``_CHECKPOINT_EVERY``-th transaction of a connection goes to its thread instead, where
      its commit checkpoints as SQLite's automatic checkpoint would.

    Otherwise, or with ``inline=False`` (a large transaction would hold the event loop), the
    whole transaction is one trip to the connection's thread, where waiting for the lock (up
    to the busy timeout) blocks nothing else. On any error the transaction is rolled back;
    ``sqlite3`` errors are raised as SQLAlchemy's ``DBAPIError`` subclasses.
    """
    if inline and isinstance(connection, _TrackedConnection):
        raw = connection.begin_inline()
        if raw is not None:
            try:
                return _finish(raw, work)
            finally:
                connection.end_inline(raw)
    return await_(run_in_thread(connection, lambda: _finish(_begin(connection._conn), work)))


async def run_transaction(
    connection: aiosqlite.Connection,
    work: Callable[[sqlite3.Connection], _T],
    *,
    inline: bool = True,
) -> _T:
    """:func:`transaction`, from a coroutine."""
    return await greenlet_spawn(transaction, connection, work, inline=inline)


def _begin(connection: sqlite3.Connection) -> sqlite3.Connection:
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise _translated("BEGIN IMMEDIATE", exc) from exc
    return connection


def _finish(connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
    """Run ``work`` in the transaction just begun, then commit; roll back if anything fails."""
    statement = "(transaction body)"
    try:
        result = work(connection)
        statement = "COMMIT"
        connection.commit()
    except BaseException as exc:
        if connection.in_transaction:
            connection.rollback()
        if isinstance(exc, sqlite3.Error):
            raise _translated(statement, exc) from exc
        raise
    return result


def _translated(statement: str, error: sqlite3.Error) -> StatementError:
    # As SQLAlchemy raises it (OperationalError, IntegrityError, ...).
    return DBAPIError.instance(statement, None, error, sqlite3.Error)


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


#: Transactions of one connection per trip to its thread when all could run inline: that
#: trip's commit checkpoints the WAL if it has grown past ``wal_autocheckpoint`` pages.
_CHECKPOINT_EVERY = 64


class _TrackedConnection(aiosqlite.Connection):
    """An aiosqlite connection that knows whether anything of it is on its thread.

    The event loop's thread counts a call in before queuing it; the connection's thread
    counts it out when the call has finished, even if its awaiter was cancelled meanwhile.
    It also begins and ends :func:`transaction`'s inline transactions.
    """

    def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        self._pending_lock = threading.Lock()
        self._pending = 0
        self._inline_since_checkpoint = 0
        self._settings: tuple[int, int] | None = None  # see _configured

    @property
    def idle(self) -> bool:
        """Open, and nothing queued or running on the connection's thread."""
        return self._running and self._connection is not None and self._pending == 0

    def begin_inline(self) -> sqlite3.Connection | None:
        """``BEGIN IMMEDIATE`` on the calling thread if it needs no wait; None if it would.

        After a begin, the caller runs :meth:`end_inline` once the transaction is over.
        """
        raw = self._connection
        if raw is None or not self.idle:
            return None
        if self._inline_since_checkpoint >= _CHECKPOINT_EVERY:
            self._inline_since_checkpoint = 0
            return None  # this one goes to the thread: its commit may checkpoint
        busy, _ = self._configured(raw)
        raw.execute("PRAGMA busy_timeout=0")
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                return None  # another writer holds the lock: wait for it on the thread
            raise _translated("BEGIN IMMEDIATE", exc) from exc
        finally:
            raw.execute(f"PRAGMA busy_timeout={busy}")
        raw.execute("PRAGMA wal_autocheckpoint=0")
        self._inline_since_checkpoint += 1
        return raw

    def end_inline(self, raw: sqlite3.Connection) -> None:
        """Restore what :meth:`begin_inline` changed, after the commit or rollback."""
        _, checkpoint = self._configured(raw)
        raw.execute(f"PRAGMA wal_autocheckpoint={checkpoint}")

    def _configured(self, raw: sqlite3.Connection) -> tuple[int, int]:
        """``busy_timeout`` and ``wal_autocheckpoint`` as set at connect (read once)."""
        if self._settings is None:
            (busy,) = raw.execute("PRAGMA busy_timeout").fetchone()
            (checkpoint,) = raw.execute("PRAGMA wal_autocheckpoint").fetchone()
            self._settings = (int(busy), int(checkpoint))
        return self._settings

    async def _execute(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if not self._running or self._connection is None:
            # Refused before anything is queued ("Connection closed"): nothing to count.
            return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call,no-any-return]

        def counted() -> _T:
            try:
                return fn(*args, **kwargs)
            finally:
                with self._pending_lock:
                    self._pending -= 1

        with self._pending_lock:
            self._pending += 1
        return await super()._execute(counted)  # type: ignore[no-untyped-call,no-any-return]


def _connect(
    database: str | bytes | Path, *, iter_chunk_size: int = 64, **kwargs: Any
) -> _TrackedConnection:
    """``aiosqlite.connect``, returning a :class:`_TrackedConnection`."""
    # transaction() may use the sqlite3 connection from the event loop's thread.
    options = {**kwargs, "check_same_thread": False}

    def connector() -> sqlite3.Connection:
        location = database.decode() if isinstance(database, bytes) else str(database)
        connection: sqlite3.Connection = sqlite3.connect(location, **options)
        return connection

    return _TrackedConnection(connector, iter_chunk_size)


class OneTripAiosqliteDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module for ``create_async_engine(..., module=...)`` on ``sqlite+aiosqlite``."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> _OneTripConnection:
        """Connect as SQLAlchemy's adapter does, and wait for aiosqlite's thread on failure."""
        creator_fn = kw.pop("async_creator_fn", None)
        if creator_fn is not None:
            return _OneTripConnection(self, cast(Any, await_(creator_fn(*arg, **kw))))
        connection = _connect(*arg, **kw)
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
