"""The one SQL code path for SQLite and PostgreSQL: dialect-aware upserts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

__all__ = ["insert_for"]


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
