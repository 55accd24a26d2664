"""Persistence: SQLAlchemy models, the session factory, Alembic migrations, and Redis."""

from dotmac_shared.business_logic.persistence.migrate import (
    FRAMEWORK_BRANCH,
    HTTP_BRANCH,
    ISP_BRANCH,
    SchemaBranch,
    SchemaSelection,
    current_revisions,
    head_revisions,
    register_schema_branch,
    schema_branches,
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
    "FRAMEWORK_BRANCH",
    "HTTP_BRANCH",
    "ISP_BRANCH",
    "SchemaBranch",
    "SchemaSelection",
    "autocommit",
    "close_session_factory",
    "create_engine",
    "create_session_factory",
    "current_revisions",
    "display_database_url",
    "engine_of",
    "head_revisions",
    "normalize_database_url",
    "register_schema_branch",
    "schema_branches",
    "sqlite_file",
    "upgrade_database",
]
