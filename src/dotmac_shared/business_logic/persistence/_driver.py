"""The hot paths' fast lane: one statement on a pooled connection's driver connection.

An idempotent replay or a saga state change is one statement and one round trip, yet
SQLAlchemy's connection, cursor and result objects around it cost as much CPU as the round
trip itself. Here the statement still comes from SQLAlchemy (a Core statement compiled once
for the engine's dialect, or SQL written for it) and values are still converted by the
column types' own processors; only the per-call machinery is skipped. Everything else in
the library uses SQLAlchemy normally. On PostgreSQL the statement runs on a pooled asyncpg
connection; on SQLite on the standard ``sqlite3`` driver of the engine's SQLite lane
(:mod:`~dotmac_shared.business_logic.persistence._sqlite_driver`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import asyncpg
from sqlalchemy import Select
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, EmulatedDBAPIException, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util.concurrency import greenlet_spawn

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.persistence._session import database_error
from dotmac_shared.business_logic.persistence._sqlite_driver import run_read

__all__ = [
    "DATABASE_ERRORS",
    "DRIVER_ERRORS",
    "CompiledSelect",
    "driver_connection",
    "is_connection_error",
    "persistence_errors",
    "pooled_driver_connection",
]

#: What the drivers raise; translated to SQLAlchemy's ``DBAPIError`` at this boundary.
DRIVER_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)

#: Everything a database call may raise because of the database, the driver or the network
#: (``ConnectionRefusedError`` and timeouts are ``OSError`` errors; a connection that fails while
#: it is being set up can raise asyncpg's ``InternalClientError``; a pool checkout that fails
#: raises the asyncpg adapter's DB-API ``Error``, which SQLAlchemy does not wrap there).
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    EmulatedDBAPIException,
    asyncpg.InternalClientError,
    *DRIVER_ERRORS,
)


#: Driver errors that mean the connection (or the server) went away, not that the statement
#: was wrong: ``pg_terminate_backend`` and server shutdown (class 57P, 08), a closed
#: connection, a refused or timed-out connect.
_CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
)


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the connection was lost.

    Such a failure is worth retrying on a new connection; an error in the statement or the
    data is not.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _CONNECTION_ERRORS):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__
    return False


@contextlib.contextmanager
def persistence_errors(operation: str, url: str | URL) -> Iterator[None]:
    """Re-raise any of :data:`DATABASE_ERRORS` raised inside as :class:`PersistenceError`.

    The one translation at a store's boundary: callers see one error type whatever the
    database, the driver or the network did, with the original as ``__cause__``. The
    message names the database (password masked) and the driver's own error on one line,
    never SQLAlchemy's echo of the statement and its values (which may hold customer data).
    Cancellation and the framework's own errors pass through untouched.

    Args:
        operation: What was being done, e.g. ``"saga.save"`` (the error's ``operation``).
        url: The database, named in the message (password masked).

    Example:
        >>> with persistence_errors("demo", engine.url):  # doctest: +SKIP
        ...     await conn.execute(statement)
    """
    try:
        yield
    except DATABASE_ERRORS as exc:
        raise database_error(url, exc, doing="use", operation=operation) from exc


@contextlib.asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """Check out a pooled connection and yield its driver connection (asyncpg or aiosqlite).

    ``driver_connection`` is SQLAlchemy's public accessor of the driver's own connection.

    Use it for one statement or one transaction, with no ``await`` of anything else inside.
    If the body fails or is interrupted the connection's state is unknown (it may be inside
    a transaction), so it is discarded rather than returned to the pool.
    """
    pooled = await engine.raw_connection()
    try:
        yield pooled.driver_connection
    except BaseException:
        await greenlet_spawn(pooled.invalidate)
        raise
    finally:
        await greenlet_spawn(pooled.close)


@contextlib.contextmanager
def pooled_driver_connection(engine: AsyncEngine) -> Iterator[Any]:
    """:func:`driver_connection` for code running in SQLAlchemy's greenlet.

    Inside ``greenlet_spawn`` the checkout, the work and the checkin share one greenlet; the
    coroutine form spawns one for the checkout and another for the checkin.
    """
    pooled = engine.sync_engine.raw_connection()
    try:
        yield pooled.driver_connection
    except BaseException:
        pooled.invalidate()
        raise
    finally:
        pooled.close()


class CompiledSelect:
    """A Core ``SELECT`` compiled once for ``engine``, run on the driver connection.

    Rows come back as mappings of column name to value, converted by each column type's
    result processor exactly as SQLAlchemy would convert them.
    """

    def __init__(self, engine: AsyncEngine, statement: Select[Any]) -> None:
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        self._engine = engine
        self._sql = str(compiled)
        self._binds: list[str] = list(compiled.positiontup or ())
        self._bind_processors = [
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self._binds
        ]
        self._types = [column.type.dialect_impl(dialect) for column in statement.selected_columns]
        self._names = [column.name for column in statement.selected_columns]
        self._postgres = dialect.name == "postgresql"
        # SQLite reports no column types (SQLAlchemy passes None too); PostgreSQL's are read
        # from the statement once, as SQLAlchemy reads them from each result's description.
        self._processors = (
            None if self._postgres else self._processors_for([None] * len(self._types))
        )

    def _processors_for(self, coltypes: Sequence[Any]) -> list[tuple[int, Callable[[Any], Any]]]:
        dialect = self._engine.dialect
        processors: list[tuple[int, Callable[[Any], Any]]] = []
        for i, (type_, coltype) in enumerate(zip(self._types, coltypes, strict=True)):
            process = type_.result_processor(dialect, coltype)
            if process is not None:
                processors.append((i, process))
        return processors

    async def all(self, **params: Any) -> list[dict[str, Any]]:
        """Run the statement with ``params`` (by bind name) and return every row.

        Raises:
            InvalidInputError: A bind parameter of the statement is missing from ``params``.
        """
        missing = [name for name in self._binds if name not in params]
        if missing:
            raise InvalidInputError(
                f"missing bind parameter(s) {', '.join(missing)} for {self._sql!r}",
                field=missing[0],
            )
        values = [
            params[name] if process is None else process(params[name])
            for name, process in zip(self._binds, self._bind_processors, strict=True)
        ]
        try:
            if self._postgres:
                async with driver_connection(self._engine) as raw:
                    if self._processors is None:
                        prepared = await raw.prepare(self._sql)
                        oids = [attribute.type.oid for attribute in prepared.get_attributes()]
                        self._processors = self._processors_for(oids)
                    rows = await raw.fetch(self._sql, *values)
            else:
                # The standard sqlite3 driver of the engine's SQLite lane: on the event
                # loop's thread when nothing would wait (a key lookup), else one trip.
                sql = self._sql
                rows = await run_read(
                    self._engine, lambda connection: connection.execute(sql, values).fetchall()
                )
        except DRIVER_ERRORS as exc:
            raise DBAPIError.instance(self._sql, values, exc, Exception) from exc
        assert self._processors is not None
        return [self._decode(row, self._processors) for row in rows]

    def _decode(
        self, row: Sequence[Any], processors: list[tuple[int, Callable[[Any], Any]]]
    ) -> dict[str, Any]:
        out = list(row)
        for i, process in processors:
            out[i] = process(out[i])
        return dict(zip(self._names, out, strict=True))
