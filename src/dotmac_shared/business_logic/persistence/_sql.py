"""The one SQL code path for SQLite and PostgreSQL: dialect-aware upserts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

__all__ = ["insert_for", "refresh_statistics"]


def insert_for(session: AsyncSession, model: type[DeclarativeBase] | Table) -> Any:
    """Return an ``INSERT`` for ``model`` that supports ``on_conflict_do_nothing``.

    PostgreSQL and SQLite spell ``INSERT ... ON CONFLICT DO NOTHING ... RETURNING`` the same
    way; SQLAlchemy exposes it per dialect, so pick the dialect the session is bound to.
    """
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(model)
    if name == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"unsupported database dialect {name!r}")


async def refresh_statistics(session: AsyncSession, *tables: str) -> None:
    """Refresh the planner's statistics of ``tables`` (``ANALYZE``) after bulk writes.

    Keyset batches (``WHERE id > :after ORDER BY id LIMIT n``) are linear only if the planner
    walks the index in order; on tables it believes nearly empty (fresh bulk inserts it has
    not analyzed yet) it sorts the whole remainder per batch instead, which is quadratic.
    """
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(text("PRAGMA analysis_limit=1000"))
    for table in tables:
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        await session.execute(text(f"ANALYZE {table}"))
