"""Alembic environment: runs on the connection handed over by ``migrate.upgrade_database``.

The revision scripts live in one directory per schema branch (``migrate.schema_branches()``);
this environment is shared by all of them.
"""

from alembic import context

from dotmac_shared.business_logic.persistence import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations with dotmac_shared.business_logic.persistence.upgrade_database() "
        "or `dotmac-bl db upgrade`"
    )

context.configure(
    connection=connection,
    # Only autogenerate reads it; the revision scripts are written out in full.
    target_metadata=context.config.attributes.get("target_metadata"),
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
