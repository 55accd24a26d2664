"""Persistence: SQLAlchemy models, the session factory, Alembic migrations, and Redis."""

from dotmac_shared.business_logic.persistence.migrate import (
    current_revision,
    head_revision,
    upgrade_database,
)
from dotmac_shared.business_logic.persistence.session import (
    DATABASE_URL_ENV,
    DEFAULT_DATABASE_URL,
    autocommit,
    close_session_factory,
    create_engine,
    create_session_factory,
    display_database_url,
    engine_of,
    normalize_database_url,
    sqlite_file,
)

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "autocommit",
    "close_session_factory",
    "create_engine",
    "create_session_factory",
    "current_revision",
    "display_database_url",
    "engine_of",
    "head_revision",
    "normalize_database_url",
    "sqlite_file",
    "upgrade_database",
]
