"""The stores' SQLite lane: the standard ``sqlite3`` driver on threads of our own.

SQLAlchemy's asyncio engine reaches SQLite through aiosqlite, and every aiosqlite call is a
trip to its thread and back; a statement costs several (open a cursor, execute, fetch,
close) plus one per ``COMMIT``. Those trips, not the SQL, were the cost of a saga state
change or an idempotent replay. The ORM and every other query keep using that engine; the
stores' hot paths go through this lane instead, built on public APIs only:

- each SQLite :class:`~sqlalchemy.ext.asyncio.AsyncEngine` gets a companion: SQLAlchemy's
  synchronous engine on the same file (driver ``sqlite3``, the same settings), whose
  connections are used by a small pool of worker threads owned by the lane
  (:class:`concurrent.futures.ThreadPoolExecutor`, awaited with
  :func:`asyncio.wrap_future`);
- :func:`run_transaction` runs a whole ``BEGIN IMMEDIATE`` … ``COMMIT`` in **one** trip to a
  worker thread, and in none when the transaction is small and SQLite grants the write lock
  at once: then it runs on the event loop's own thread (see :func:`run_transaction`);
- :func:`run_read` does the same for a read (a key lookup): on the event loop's thread when
  nothing would wait, else one trip.

The lane is created on first use and closed when its engine is disposed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool, QueuePool

from dotmac_shared.business_logic.exceptions import InvalidInputError, PersistenceError

__all__ = [
    "SQLITE_BUSY_TIMEOUT_MS",
    "SqliteLane",
    "configure_sqlite_connection",
    "run_in_thread",
    "run_read",
    "run_transaction",
    "sqlite_lane",
]

_T = TypeVar("_T")

#: How long a writer waits for SQLite's write lock before ``database is locked``.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Worker threads (each with its own connection) per lane.
_WORKERS = 4
#: Inline write transactions of a lane per one sent to a worker thread instead: that one's
#: commit checkpoints the WAL if it has grown past ``wal_autocheckpoint`` pages.
_CHECKPOINT_EVERY = 64


def configure_sqlite_connection(connection: Any) -> None:
    """Make a new SQLite DBAPI connection WAL, foreign-key checked and patient.

    For SQLAlchemy's ``connect`` event, on the ``sqlite3`` driver and on SQLAlchemy's
    aiosqlite adapter alike (both take ``cursor()``, ``execute`` and ``close``).
    """
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _translated(statement: str, error: sqlite3.Error) -> StatementError:
    # As SQLAlchemy raises it (OperationalError, IntegrityError, ...).
    return DBAPIError.instance(statement, None, error, sqlite3.Error)


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF == 5)  # SQLITE_BUSY, whatever its extended code
    return "database is locked" in str(error)


def _begin(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise _translated("BEGIN IMMEDIATE", exc) from exc


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


def _sqlite_of(pooled: Any) -> sqlite3.Connection:
    """The ``sqlite3`` connection of one of the lane's pooled connections."""
    return cast(sqlite3.Connection, pooled.driver_connection)


def _is_memory(url: URL) -> bool:
    database = url.database or ""
    return database in {"", ":memory:"} or url.query.get("mode") == "memory"


class SqliteLane:
    """The synchronous engine and worker threads that serve one SQLite async engine.

    Two kinds of connection, never shared between threads at once:

    - each worker thread holds one pooled connection for its life (``busy_timeout`` as
      configured: a worker may wait for the write lock, the event loop never does);
    - one *inline* connection is used on the event loop's thread, guarded by a lock taken
      without waiting, with ``busy_timeout=0`` (SQLite answers ``SQLITE_BUSY`` at once
      instead of waiting) and ``wal_autocheckpoint=0`` (a checkpoint syncs files to disk:
      that is left to the workers' commits, see :data:`_CHECKPOINT_EVERY`).

    Args:
        url: The async engine's URL (``sqlite+aiosqlite``) or any SQLite URL of the file.

    Raises:
        InvalidInputError: ``url`` names an in-memory database, which is private to one
            connection and so cannot be shared with the async engine.
    """

    def __init__(self, url: URL) -> None:
        if _is_memory(url):
            raise InvalidInputError(
                "the saga and idempotency stores need an SQLite file: an in-memory database "
                "is private to one connection",
                field="url",
            )
        self.engine: Engine = create_engine(
            url.set(drivername="sqlite+pysqlite"),
            poolclass=QueuePool,
            pool_size=_WORKERS + 1,
            max_overflow=0,
            # Driver-level autocommit: BEGIN IMMEDIATE is issued by this module itself.
            isolation_level="AUTOCOMMIT",
            connect_args={"check_same_thread": False},
        )
        event.listen(self.engine, "connect", self._on_connect)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=_WORKERS, thread_name_prefix="dotmac-sqlite"
        )
        self._local = threading.local()
        self._held: list[Any] = []  # pooled connections held by worker threads
        self._held_lock = threading.Lock()
        self._inline_lock = threading.Lock()
        self._inline: Any = None  # the inline pooled connection, opened on first use
        self._inline_writes = 0
        self._closed = False

    @staticmethod
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        configure_sqlite_connection(dbapi_connection)

    # --- worker threads --------------------------------------------------------------------

    def _worker_connection(self) -> sqlite3.Connection:
        """The calling worker thread's own connection (checked out on its first job)."""
        pooled = getattr(self._local, "pooled", None)
        if pooled is None:
            pooled = self.engine.raw_connection()
            with self._held_lock:
                self._held.append(pooled)
            self._local.pooled = pooled
        return _sqlite_of(pooled)

    def _drop_worker_connection(self) -> None:
        """Discard the calling worker's connection (its state is unknown after a failure)."""
        pooled = getattr(self._local, "pooled", None)
        if pooled is not None:
            self._local.pooled = None
            with self._held_lock:
                self._held.remove(pooled)
            pooled.invalidate()

    async def in_thread(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` with a worker thread's connection, in one trip to that thread.

        The event loop runs on meanwhile. If the caller is cancelled before a worker took
        the job, it never runs; once it runs it finishes, and its result is dropped.
        """

        def job() -> _T:
            self._local.is_worker = True
            connection = self._worker_connection()
            try:
                return work(connection)
            except BaseException:
                if connection.in_transaction:
                    self._drop_worker_connection()
                raise

        if self._closed:
            raise PersistenceError("the SQLite engine was disposed", operation="sqlite_lane")
        return await asyncio.wrap_future(self._executor.submit(job))

    # --- the event loop's thread -------------------------------------------------------------

    @contextlib.contextmanager
    def _inline_connection(self) -> Iterator[sqlite3.Connection | None]:
        """The inline connection if no other thread is using it now, else None."""
        if self._closed or not self._inline_lock.acquire(blocking=False):
            yield None
            return
        try:
            if self._inline is not None and self._inline.driver_connection.in_transaction:
                # A rollback that failed left it inside a transaction: never reuse that.
                self._inline.invalidate()
                self._inline = None
            if self._inline is None:
                pooled = self.engine.raw_connection()
                _sqlite_of(pooled).execute("PRAGMA busy_timeout=0")
                _sqlite_of(pooled).execute("PRAGMA wal_autocheckpoint=0")
                self._inline = pooled
            yield _sqlite_of(self._inline)
        finally:
            self._inline_lock.release()

    async def transaction(
        self, work: Callable[[sqlite3.Connection], _T], *, inline: bool = True
    ) -> _T:
        """See :func:`run_transaction`."""
        if inline and self._inline_writes < _CHECKPOINT_EVERY:
            with self._inline_connection() as connection:
                if connection is not None:
                    try:
                        connection.execute("BEGIN IMMEDIATE")
                    except sqlite3.OperationalError as exc:
                        if not _is_busy(exc):
                            raise _translated("BEGIN IMMEDIATE", exc) from exc
                        # Another writer holds the lock: wait for it on a worker thread.
                    else:
                        self._inline_writes += 1
                        return _finish(connection, work)
        # On a worker thread, whose commit checkpoints the WAL if it has grown.
        self._inline_writes = 0
        return await self.in_thread(lambda connection: _begun_and_finished(connection, work))

    async def read(self, work: Callable[[sqlite3.Connection], _T], *, inline: bool = True) -> _T:
        """See :func:`run_read`."""
        if inline:
            with self._inline_connection() as connection:
                if connection is not None:
                    try:
                        return work(connection)
                    except sqlite3.OperationalError as exc:
                        if not _is_busy(exc) or connection.in_transaction:
                            raise
                        # Busy (a checkpoint or recovery holds a lock): wait on a worker.
        return await self.in_thread(work)

    def close(self) -> None:
        """Finish the workers' jobs, then close every connection of the lane."""
        if self._closed:
            return
        self._closed = True
        if getattr(self._local, "is_worker", False):
            # Collected on one of our own workers: it cannot wait for itself. The
            # connections close when they are collected in turn.
            self._executor.shutdown(wait=False)
            return
        self._executor.shutdown(wait=True)
        with self._held_lock:
            held, self._held = self._held, []
        for pooled in held:
            pooled.close()
        with self._inline_lock:
            if self._inline is not None:
                self._inline.close()
                self._inline = None
        self.engine.dispose()


def _begun_and_finished(
    connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]
) -> _T:
    _begin(connection)
    return _finish(connection, work)


#: One lane per pool of an async engine: the engine's views (``execution_options``) share
#: its pool, and so its lane; ``dispose()`` gives the engine a new pool and a new lane.
_LANES: weakref.WeakKeyDictionary[Pool, SqliteLane] = weakref.WeakKeyDictionary()
_LANES_LOCK = threading.Lock()


def sqlite_lane(engine: AsyncEngine) -> SqliteLane:
    """Return the lane serving ``engine`` (an SQLite async engine), creating it if need be.

    Raises:
        InvalidInputError: ``engine`` is not SQLite, or its database is in memory.
    """
    if engine.dialect.name != "sqlite":
        raise InvalidInputError(
            f"the SQLite lane needs an SQLite engine, not {engine.dialect.name}", field="engine"
        )
    sync_engine = engine.sync_engine
    pool = sync_engine.pool
    lane = _LANES.get(pool)
    if lane is not None:
        return lane
    with _LANES_LOCK:
        lane = _LANES.get(pool)
        if lane is None:
            lane = SqliteLane(engine.url)
            _LANES[pool] = lane
            # Closed with its engine; if it was reached through a view whose base engine is
            # disposed instead, closed when the old pool is collected.
            event.listen(sync_engine, "engine_disposed", _closer(pool), once=True)
            weakref.finalize(pool, lane.close)
    return lane


def _closer(pool: Pool) -> Callable[[Any], None]:
    reference = weakref.ref(pool)

    def close(_engine: Any) -> None:
        old = reference()
        lane = _LANES.pop(old, None) if old is not None else None
        if lane is not None:
            lane.close()

    return close


async def run_transaction(
    engine: AsyncEngine,
    work: Callable[[sqlite3.Connection], _T],
    *,
    inline: bool = True,
) -> _T:
    """Run ``work`` inside ``BEGIN IMMEDIATE`` … ``COMMIT`` on ``engine``'s database.

    A trip to a worker thread costs more than a small transaction's SQL, so with ``inline``
    the transaction runs right here, on the event loop's thread, when SQLite can do it
    without waiting for anything:

    - the lane's inline connection is free (no other thread is using it);
    - SQLite grants the write lock at once: ``BEGIN IMMEDIATE`` runs with a busy timeout
      of 0, so the event loop never waits for another writer;
    - the commit does not checkpoint the WAL (a checkpoint syncs files to disk): inline
      commits run with ``wal_autocheckpoint`` off, and every ``_CHECKPOINT_EVERY``-th
      transaction goes to a worker thread instead, where its commit checkpoints as SQLite's
      automatic checkpoint would.

    Otherwise, or with ``inline=False`` (a large transaction would hold the event loop), the
    whole transaction is one trip to a worker thread, where waiting for the lock (up to the
    busy timeout) blocks nothing else. On any error the transaction is rolled back;
    ``sqlite3`` errors are raised as SQLAlchemy's ``DBAPIError`` subclasses.

    Args:
        engine: An SQLite async engine (or a view of it).
        work: Runs the transaction's statements on the ``sqlite3`` connection it is given
            and returns the result; it must not commit, roll back or keep the connection.
        inline: Allow the event loop's thread (for small transactions).
    """
    return await sqlite_lane(engine).transaction(work, inline=inline)


async def run_read(
    engine: AsyncEngine,
    work: Callable[[sqlite3.Connection], _T],
    *,
    inline: bool = True,
) -> _T:
    """Run the read-only ``work`` on ``engine``'s database, outside any transaction.

    With ``inline`` it runs on the event loop's thread when the lane's inline connection is
    free; a read in WAL mode waits for no writer, and should SQLite still answer
    ``SQLITE_BUSY`` (busy timeout 0 there) the read is run again on a worker thread. Keep
    ``inline`` for small reads (a key lookup): a long one would hold the event loop.
    ``sqlite3`` errors are raised as they are (the caller knows its statement).
    """
    return await sqlite_lane(engine).read(work, inline=inline)


async def run_in_thread(engine: AsyncEngine, work: Callable[[sqlite3.Connection], _T]) -> _T:
    """Run ``work`` with a worker thread's ``sqlite3`` connection: one trip however much it does.

    ``work`` manages any transaction itself (the connection is in driver-level autocommit
    mode); a transaction it leaves open when it fails costs the worker its connection.
    """
    return await sqlite_lane(engine).in_thread(work)
