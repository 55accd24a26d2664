"""Turn a database URL into the spec's ``db_session_factory``.

One code path for SQLite (the embedded default) and PostgreSQL: the URL picks the async
driver, and SQLite is set up for concurrent use (WAL, foreign keys, a busy timeout and
``BEGIN IMMEDIATE`` so that two writers queue instead of failing mid-transaction).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool

from dotmac_shared.business_logic.exceptions import InvalidInputError, PersistenceError
from dotmac_shared.business_logic.persistence._sqlite_driver import configure_sqlite_connection

if TYPE_CHECKING:  # migrate imports this module: only its type alias is needed here
    from dotmac_shared.business_logic.persistence._migrate import SchemaSelection

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "autocommit",
    "close_session_factory",
    "create_engine",
    "database_error",
    "create_session_factory",
    "display_database_url",
    "engine_of",
    "normalize_database_url",
    "sqlite_file",
]

#: Environment variable read when no URL is given.
DATABASE_URL_ENV = "DOTMAC_DATABASE_URL"
#: The embedded default: an SQLite file in the working directory.
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///dotmac_business_logic.db"

#: Execution option of :func:`autocommit` on SQLite: run without ``BEGIN IMMEDIATE``.
_SQLITE_AUTOCOMMIT = "dotmac_sqlite_autocommit"
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
#: Stands in for a password given as a query parameter while the URL is rendered.
_MASK_TOKEN = "DOTMACMASKEDPASSWORD"


def _raw_url(url: str | URL | None) -> str | URL:
    return url if url is not None else os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def _mask_userinfo(raw: str) -> str:
    """Mask what could be a password in text that is not a parsable URL."""
    head, at, tail = raw.rpartition("@")
    if not at:
        return raw
    scheme, separator, userinfo = head.rpartition("://")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{separator}{user}:***@{tail}"


def display_database_url(url: str | URL | None = None) -> str:
    """Return ``url`` as it may be printed or logged: any password replaced by ``***``.

    Every message, log line and output line that names a database uses this form, never
    the URL itself. A password given as a ``password`` query parameter is masked too, and
    text that does not parse as a URL has everything between ``://`` and the last ``@``
    after the user name masked.

    Args:
        url: A URL or URL string; defaults to ``$DOTMAC_DATABASE_URL`` or the SQLite default.

    Example:
        >>> display_database_url("postgresql://app:s3cret@db/prod")
        'postgresql://app:***@db/prod'
    """
    raw = _raw_url(url)
    try:
        parsed = raw if isinstance(raw, URL) else make_url(raw)
    except (ArgumentError, ValueError):
        return _mask_userinfo(str(raw))
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": _MASK_TOKEN})
    return parsed.render_as_string(hide_password=True).replace(_MASK_TOKEN, "***")


def _cause(exc: BaseException) -> str:
    """The driver's own words for ``exc`` on one line, led by the most telling type name."""
    source: BaseException = exc
    if isinstance(exc, DBAPIError) and isinstance(exc.orig, BaseException):
        source = exc.orig  # without SQLAlchemy's "(dialect.Error)" prefix and SQL echo
    # SQLAlchemy's asyncpg adapter raises a generic Error caused by asyncpg's precise one.
    name = type(source.__cause__ or source).__name__
    text = " ".join(str(source).split())
    return f"{name}: {text}" if text else name


def database_error(
    url: str | URL | None,
    exc: BaseException,
    *,
    doing: str = "connect to",
    operation: str | None = None,
) -> PersistenceError:
    """A one-line :class:`PersistenceError` naming the database (password masked) and the cause.

    The caller raises it ``from exc``. The cause text is the driver's message; should a
    driver echo the URL or the password, they are masked there too.

    Args:
        url: The database the failure happened on.
        exc: The driver or network error.
        doing: What failed, completing "cannot ... database": ``"connect to"``, ``"migrate"``.
        operation: The error's ``operation`` field.

    Example:
        >>> error = database_error("postgresql://app:pw@db/x", ConnectionRefusedError("refused"))
        >>> error.message
        'cannot connect to database postgresql://app:***@db/x: ConnectionRefusedError: refused'
    """
    shown = display_database_url(url)
    cause = _cause(exc)
    raw = _raw_url(url)
    try:
        parsed = raw if isinstance(raw, URL) else make_url(raw)
    except (ArgumentError, ValueError):
        parsed = None
    if parsed is not None:
        cause = cause.replace(parsed.render_as_string(hide_password=False), shown)
        if parsed.password:
            cause = cause.replace(str(parsed.password), "***")
    return PersistenceError(
        f"cannot {doing} database {shown}: {cause}",
        operation=operation,
        metadata={"url": shown, "cause": type(exc).__name__},
    )


def normalize_database_url(url: str | URL | None = None) -> URL:
    """Resolve ``url`` (or ``$DOTMAC_DATABASE_URL``, or the SQLite default) to an async URL.

    ``sqlite:///x.db`` and ``postgresql://...`` are accepted and given their async drivers.

    Raises:
        InvalidInputError: The URL cannot be parsed or names an unsupported database.
    """
    raw = _raw_url(url)
    try:
        parsed = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        # ValueError: a port that is not a number; the message never shows the password.
        shown = display_database_url(raw)
        raise InvalidInputError(f"cannot parse database URL {shown!r}", field="url") from exc
    backend = parsed.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise InvalidInputError(
            f"unsupported database {backend!r} in URL; use sqlite or postgresql",
            field="url",
        )
    if parsed.drivername != _ASYNC_DRIVERS[backend]:
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[backend])
    return parsed


def sqlite_file(url: str | URL | None = None) -> Path | None:
    """Return the file an SQLite URL names, or ``None`` (in-memory SQLite, or not SQLite).

    A relative path is relative to the working directory, as SQLite opens it. A URI
    filename (``sqlite:///file:data.db?uri=true``) gives the path after ``file:``.

    Raises:
        InvalidInputError: As :func:`normalize_database_url`.

    Example:
        >>> sqlite_file("sqlite:///data/app.db")
        PosixPath('data/app.db')
    """
    resolved = normalize_database_url(url)
    if resolved.get_backend_name() != "sqlite":
        return None
    database = resolved.database or ""
    if database in {"", ":memory:"} or resolved.query.get("mode") == "memory":
        return None
    if database.startswith("file:"):
        database = database.removeprefix("file:")
        database = database.removeprefix("//") if database.startswith("///") else database
    return Path(database)


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Make every SQLite connection WAL, foreign-key checked, patient and IMMEDIATE."""

    @event.listens_for(engine.sync_engine, "do_connect")
    def _on_do_connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> None:
        # Open the file with the plain sqlite3 driver first: a database that cannot be
        # opened fails here, before aiosqlite starts a thread for it. (aiosqlite stops that
        # thread without waiting for it; when the event loop closes at once, as a failed CLI
        # command's does, the thread's late answer printed "Event loop is closed".)
        options = {k: v for k, v in cparams.items() if k != "iter_chunk_size"}
        sqlite3.connect(*cargs, **options).close()

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: "begin" below issues the BEGIN.
        dbapi_connection.isolation_level = None
        configure_sqlite_connection(dbapi_connection)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: a reader that later writes cannot
        # deadlock against another writer (SQLITE_BUSY mid-transaction), it waits instead.
        # An autocommit connection (single-statement reads and claims) gets no BEGIN at all.
        dbapi_connection = conn.connection.dbapi_connection
        if dbapi_connection.isolation_level is not None:
            # SQLAlchemy resets a connection that ran with isolation_level=AUTOCOMMIT to
            # the driver's "" (an implicit DEFERRED BEGIN before a write, which nobody would
            # commit on an autocommit connection): back to driver-level autocommit.
            dbapi_connection.isolation_level = None
        options = conn.get_execution_options()
        if options.get(_SQLITE_AUTOCOMMIT) or options.get("isolation_level") == "AUTOCOMMIT":
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str | URL | None = None, **engine_options: Any) -> AsyncEngine:
    """Create an async engine for ``url`` with the framework's per-database settings."""
    resolved = normalize_database_url(url)
    # No pool_pre_ping by default: it costs a round trip per checkout, which doubles the cost
    # of an idempotent replay. Pass pool_pre_ping=True where connections go stale (proxies).
    # Multi-row INSERTs in pages of 50: each distinct page size is a distinct statement that
    # the SQL compiler and asyncpg cache, so large pages of varying size made memory grow
    # with the number of batches (a billing run's peak RSS grew with its customer count).
    options: dict[str, Any] = {"insertmanyvalues_page_size": 50}
    sqlite = resolved.get_backend_name() == "sqlite"
    if sqlite and sqlite_file(resolved) is not None:
        # Pooled, as SQLAlchemy's later 2.0 releases do by default (the first ones
        # opened a new connection, and aiosqlite thread, per checkout).
        options["poolclass"] = AsyncAdaptedQueuePool
    options.update(engine_options)
    engine = create_async_engine(resolved, **options)
    if sqlite:
        _configure_sqlite(engine)
    return engine


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """Return a view of ``engine`` on which every statement commits on its own.

    For single-statement work (reads, atomic claims, fenced updates): no ``BEGIN``, no
    ``COMMIT``. On PostgreSQL this is the ``AUTOCOMMIT`` isolation level. On SQLite the
    driver is always in autocommit mode, so it is enough to skip ``BEGIN IMMEDIATE``;
    switching the isolation level there would cost two trips to aiosqlite's thread and a
    ``PRAGMA`` per checkout (set it, then reset it when the connection is returned).
    """
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{_SQLITE_AUTOCOMMIT: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def create_session_factory(
    url: str | URL | None = None,
    *,
    migrate: bool = True,
    schema: SchemaSelection = "all",
    **engine_options: Any,
) -> async_sessionmaker[AsyncSession]:
    """Return the spec's ``db_session_factory`` for ``url``, schema migrated to the latest.

    Args:
        url: A database URL; defaults to ``$DOTMAC_DATABASE_URL`` or an SQLite file
            ``dotmac_business_logic.db`` in the working directory.
        migrate: Run the Alembic migrations first (safe to call from several processes).
        schema: Which tables to migrate: ``"all"`` (the framework's and the ISP domain's,
            which the spec's operations use), ``"framework"`` (only idempotency records,
            saga executions and the policy decision log: for a user of idempotency or sagas
            alone), or a sequence of branch labels (see :func:`~dotmac_shared.business_logic.
            persistence.migrate.upgrade_database`). Ignored when ``migrate`` is false.
        **engine_options: Passed to :func:`sqlalchemy.ext.asyncio.create_async_engine`.

    Example:
        >>> session_factory = create_session_factory("sqlite:///:memory:", migrate=False)
        >>> framework_only = create_session_factory(schema="framework")  # doctest: +SKIP
    """
    if migrate:
        from dotmac_shared.business_logic.persistence._migrate import upgrade_database

        upgrade_database(url, schema=schema)
    engine = create_engine(url, **engine_options)
    return async_sessionmaker(engine, expire_on_commit=False)


def engine_of(session_factory: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """Return the engine a session factory is bound to (to dispose it, or read its dialect)."""
    bind = session_factory.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise InvalidInputError("session factory is not bound to an AsyncEngine", field="bind")
    return bind


async def close_session_factory(session_factory: async_sessionmaker[AsyncSession]) -> None:
    """Close every connection of ``session_factory``'s engine (and its SQLite threads).

    Call it when the application shuts down. The factory may still be used afterwards: it
    opens new connections on demand.

    Example:
        >>> await close_session_factory(session_factory)  # doctest: +SKIP
    """
    await engine_of(session_factory).dispose()
