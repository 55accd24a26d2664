"""Programmatic Alembic migrations, so a new user needs no separate set-up step."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dotmac_shared.business_logic.exceptions import PersistenceError
from dotmac_shared.business_logic.persistence.driver import DRIVER_ERRORS
from dotmac_shared.business_logic.persistence.session import create_engine, database_error

__all__ = ["VERSION_TABLE", "current_revision", "head_revision", "upgrade_database"]

#: Alembic's version table, named apart from any application's own ``alembic_version``.
VERSION_TABLE = "dotmac_bl_alembic_version"
# Any fixed 64-bit number; all processes migrating one PostgreSQL database serialize on it.
_PG_MIGRATION_LOCK = 0x646F746D6163


def _alembic_config() -> Config:
    cfg = Config()
    location = resources.files("dotmac_shared.business_logic.persistence") / "migrations"
    cfg.set_main_option("script_location", str(location))
    return cfg


def head_revision() -> str:
    """Return the newest migration's revision id."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise PersistenceError("no migrations are packaged")
    return head


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = _alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _current(connection: Connection) -> str | None:
    ctx = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return ctx.get_current_revision()


#: What opening a connection may raise: SQLAlchemy's errors and the drivers' own.
_CONNECT_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, *DRIVER_ERRORS)


@asynccontextmanager
async def _connected(engine: AsyncEngine, operation: str) -> AsyncIterator[AsyncConnection]:
    """A connection of ``engine``; failing to open one is a :class:`PersistenceError`."""
    try:
        conn = await engine.connect()
    except _CONNECT_ERRORS as exc:
        # Driver errors: asyncpg's refused, reset or timed-out sockets and unknown host
        # names reach us untranslated by SQLAlchemy, and so (before SQLAlchemy 2.1) does
        # what the server answers at connect, such as a database that does not exist.
        raise database_error(engine.url, exc, operation=operation) from exc
    try:
        yield conn
    finally:
        await conn.close()


async def _run(url: str | URL | None, revision: str) -> str | None:
    engine = create_engine(url)
    try:
        # One transaction: on PostgreSQL DDL is transactional, and the advisory lock makes
        # concurrent migrators wait; on SQLite BEGIN IMMEDIATE serializes them the same way.
        async with _connected(engine, "migrate") as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            await conn.run_sync(_upgrade, revision)
            return await conn.run_sync(_current)
    except (SQLAlchemyError, OSError) as exc:
        raise database_error(engine.url, exc, doing="migrate", operation="migrate") from exc
    finally:
        await engine.dispose()


async def _read_current(url: str | URL | None) -> str | None:
    engine = create_engine(url)
    try:
        async with _connected(engine, "read_migration_state") as conn:
            return await conn.run_sync(_current)
    except (SQLAlchemyError, OSError) as exc:
        raise database_error(
            engine.url, exc, doing="read the migration state of", operation="read_migration_state"
        ) from exc
    finally:
        await engine.dispose()


def _in_thread(coro_factory: Any) -> Any:
    """Run a coroutine to completion on a private loop, even from inside a running loop."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(coro_factory())
        except BaseException as exc:  # re-raised in the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="dotmac-migrate")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def upgrade_database(url: str | URL | None = None, revision: str = "head") -> str | None:
    """Migrate the database at ``url`` to ``revision``; returns the revision it is now at.

    Idempotent and safe to call from several processes at once. Synchronous, so it can run
    at import time or inside a running event loop (it uses a private thread).

    Raises:
        PersistenceError: The database is unreachable or a migration failed; the message
            names the database (password masked) and the cause.
    """
    result: str | None = _in_thread(lambda: _run(url, revision))
    return result


def current_revision(url: str | URL | None = None) -> str | None:
    """Return the revision the database at ``url`` is at, or ``None`` if never migrated.

    Raises:
        PersistenceError: The database is unreachable; the message names it (password masked).
    """
    result: str | None = _in_thread(lambda: _read_current(url))
    return result
