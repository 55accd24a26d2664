"""Alembic environment: runs on the connection handed over by ``migrate.upgrade_database``."""

from alembic import context

from dotmac_shared.business_logic.persistence.migrate import VERSION_TABLE
from dotmac_shared.business_logic.persistence.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations with dotmac_shared.business_logic.persistence.upgrade_database() "
        "or `dotmac-bl db upgrade`"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
