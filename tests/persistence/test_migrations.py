"""Schema branches: the framework's tables alone or with the ISP domain's, all prefixed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect
from sqlalchemy.ext.asyncio import AsyncConnection

from dotmac_shared.business_logic import (
    InvalidInputError,
    PersistenceError,
    SchemaVersionError,
    create_session_factory,
)
from dotmac_shared.business_logic.http import HttpBase
from dotmac_shared.business_logic.operations.models import DomainBase
from dotmac_shared.business_logic.persistence import (
    FRAMEWORK_BRANCH,
    HTTP_BRANCH,
    ISP_BRANCH,
    current_revisions,
    engine_of,
    head_revisions,
    register_schema_branch,
    schema_branches,
    upgrade_database,
)
from dotmac_shared.business_logic.persistence import _migrate as migrate_module
from dotmac_shared.business_logic.persistence._migrate import VERSION_TABLE
from dotmac_shared.business_logic.persistence._session import create_engine
from dotmac_shared.business_logic.persistence.models import Base

FRAMEWORK_TABLES = {
    "dotmac_idempotency_records",
    "dotmac_policy_decisions",
    "dotmac_saga_events",
    "dotmac_saga_executions",
    "dotmac_saga_step_executions",
}
ISP_TABLES = {
    "dotmac_billing_accounts",
    "dotmac_billing_partitions",
    "dotmac_billing_runs",
    "dotmac_commission_configurations",
    "dotmac_customers",
    "dotmac_gateway_ledger",
    "dotmac_invoice_lines",
    "dotmac_invoices",
    "dotmac_network_configurations",
    "dotmac_notification_outbox",
    "dotmac_payments",
    "dotmac_resource_allocations",
    "dotmac_resource_pools",
    "dotmac_resources",
    "dotmac_service_plans",
    "dotmac_services",
    "dotmac_tenant_settings",
    "dotmac_tenants",
}
HTTP_TABLES = {"dotmac_api_keys"}
#: PostgreSQL cuts longer identifiers, which would make a constraint's name differ by database.
MAX_IDENTIFIER = 63


async def _run(url: str, fn):
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    return set(await _run(url, lambda c: inspect(c).get_table_names())) - {VERSION_TABLE}


def _names_in(url_conn) -> list[str]:
    """Every table, index and constraint name the database holds (but Alembic's own)."""
    inspector = inspect(url_conn)
    names = []
    for table in inspector.get_table_names():
        if table == VERSION_TABLE:
            continue
        names.append(table)
        names += [i["name"] for i in inspector.get_indexes(table)]
        names += [u["name"] for u in inspector.get_unique_constraints(table)]
        names += [f["name"] for f in inspector.get_foreign_keys(table)]
        if inspector.bind.dialect.name == "postgresql":  # SQLite does not keep PK names
            names.append(inspector.get_pk_constraint(table)["name"])
    return names


def _both_metadata() -> MetaData:
    merged = MetaData()
    for metadata in (Base.metadata, DomainBase.metadata, HttpBase.metadata):
        for table in metadata.sorted_tables:
            table.to_metadata(merged)
    return merged


async def test_full_upgrade_creates_every_table_with_the_prefix_when_database_is_empty(
    database_url,
):
    assert current_revisions(database_url) == {}

    assert upgrade_database(database_url) == head_revisions()

    assert await _tables(database_url) == FRAMEWORK_TABLES | ISP_TABLES | HTTP_TABLES
    names = await _run(database_url, _names_in)
    assert all("dotmac_" in name for name in names), [n for n in names if "dotmac_" not in n]
    # SQLite keeps long names whole: none is cut (differently) by PostgreSQL either.
    assert max(len(name) for name in names) <= MAX_IDENTIFIER
    assert current_revisions(database_url) == {
        FRAMEWORK_BRANCH: "f0002_saga_events",
        ISP_BRANCH: "d0003_billing_partitions",
        HTTP_BRANCH: "h0001_api_keys",
    }


async def test_framework_only_creates_exactly_the_framework_tables_when_chosen(database_url):
    revisions = upgrade_database(database_url, schema="framework")

    assert revisions == {FRAMEWORK_BRANCH: "f0002_saga_events"}
    assert await _tables(database_url) == FRAMEWORK_TABLES
    assert current_revisions(database_url) == head_revisions("framework")


async def test_session_factory_migrates_only_the_framework_when_schema_is_framework(
    database_url,
):
    factory = create_session_factory(database_url, schema="framework")
    try:
        assert await _tables(database_url) == FRAMEWORK_TABLES
    finally:
        await engine_of(factory).dispose()


async def test_full_upgrade_adds_the_isp_tables_when_framework_was_migrated_first(
    database_url,
):
    upgrade_database(database_url, schema="framework")

    assert upgrade_database(database_url) == head_revisions()

    assert await _tables(database_url) == FRAMEWORK_TABLES | ISP_TABLES | HTTP_TABLES


async def test_framework_upgrade_keeps_the_isp_branch_when_database_is_fully_migrated(
    database_url,
):
    upgrade_database(database_url)

    assert upgrade_database(database_url, schema="framework") == head_revisions()
    assert await _tables(database_url) == FRAMEWORK_TABLES | ISP_TABLES | HTTP_TABLES


async def test_second_upgrade_changes_nothing_when_already_at_head(database_url):
    upgrade_database(database_url)
    before = await _run(database_url, _names_in)

    assert upgrade_database(database_url) == head_revisions()
    assert await _run(database_url, _names_in) == before


@pytest.mark.parametrize(
    ("schema", "metadata"),
    [("framework", lambda: Base.metadata), ("all", _both_metadata)],
    ids=["framework", "all"],
)
async def test_models_and_migrations_agree_when_migrated(database_url, schema, metadata):
    upgrade_database(database_url, schema=schema)
    target = metadata()

    def diff(sync_conn):
        ctx = MigrationContext.configure(sync_conn, opts={"version_table": VERSION_TABLE})
        return compare_metadata(ctx, target)

    assert await _run(database_url, diff) == []


def test_framework_branch_is_migrated_first_when_listed():
    labels = [branch.label for branch in schema_branches()]
    assert labels[:3] == [FRAMEWORK_BRANCH, ISP_BRANCH, HTTP_BRANCH]


async def _stamp(url: str, revision: str) -> None:
    async def go(conn: AsyncConnection) -> None:
        await conn.exec_driver_sql(
            f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
        )
        await conn.exec_driver_sql(f"INSERT INTO {VERSION_TABLE} VALUES ('{revision}')")
        await conn.exec_driver_sql("CREATE TABLE customers (id VARCHAR(64) PRIMARY KEY)")

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await go(conn)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "entry",
    [
        lambda url: upgrade_database(url),
        lambda url: upgrade_database(url, schema="framework"),
        current_revisions,
        create_session_factory,
    ],
    ids=["upgrade", "upgrade_framework", "current_revisions", "create_session_factory"],
)
async def test_pre_release_database_is_refused_with_what_to_do_when_migrated(database_url, entry):
    await _stamp(database_url, "0007_policy_decisions")

    with pytest.raises(SchemaVersionError) as info:
        entry(database_url)

    error = info.value
    assert isinstance(error, PersistenceError)
    assert error.code == "schema_version_error"
    assert "pre-release schema" in error.message and "0007_policy_decisions" in error.message
    assert "new database" in error.message and VERSION_TABLE in error.message
    assert error.metadata["revisions"] == ["0007_policy_decisions"]
    assert await _tables(database_url) == {"customers"}  # nothing was created


async def test_unknown_revision_is_refused_when_migrated(database_url):
    await _stamp(database_url, "z9999_from_the_future")

    with pytest.raises(SchemaVersionError, match="z9999_from_the_future.*unknown"):
        upgrade_database(database_url)
    assert await _tables(database_url) == {"customers"}


@pytest.mark.parametrize("schema", ["domain", ["dotmac_nope"]])
def test_unknown_schema_selection_is_an_input_error_when_given(schema, tmp_path):
    with pytest.raises(InvalidInputError) as info:
        upgrade_database(f"sqlite:///{tmp_path / 'x.db'}", schema=schema)
    assert info.value.field == "schema"
    assert not (tmp_path / "x.db").exists()


def _write_branch(directory: Path) -> None:
    """A third branch, as another package would ship it: two revisions, one table."""
    directory.mkdir()
    (directory / "x0001_extra.py").write_text(
        textwrap.dedent(
            """
            import sqlalchemy as sa
            from alembic import op

            revision = "x0001_extra"
            down_revision = None
            branch_labels = ("dotmac_extra",)
            depends_on = None

            def upgrade():
                op.create_table(
                    "dotmac_extra_keys", sa.Column("id", sa.Integer(), primary_key=True)
                )

            def downgrade():
                op.drop_table("dotmac_extra_keys")
            """
        )
    )
    (directory / "x0002_extra_name.py").write_text(
        textwrap.dedent(
            """
            import sqlalchemy as sa
            from alembic import op

            revision = "x0002_extra_name"
            down_revision = "x0001_extra"
            branch_labels = None
            depends_on = None

            def upgrade():
                op.add_column("dotmac_extra_keys", sa.Column("name", sa.String(64)))

            def downgrade():
                op.drop_column("dotmac_extra_keys", "name")
            """
        )
    )


async def test_registered_branch_is_migrated_with_all_and_not_with_framework(
    database_url, tmp_path, monkeypatch
):
    # Registration is process-wide: give this test a registry of its own.
    monkeypatch.setattr(migrate_module, "_BRANCHES", dict(migrate_module._BRANCHES))
    _write_branch(tmp_path / "extra")
    register_schema_branch("dotmac_extra", tmp_path / "extra", "an extra package's tables")

    upgrade_database(database_url, schema="framework")
    assert await _tables(database_url) == FRAMEWORK_TABLES

    revisions = upgrade_database(database_url, schema=["dotmac_extra"])
    assert revisions == {FRAMEWORK_BRANCH: "f0002_saga_events", "dotmac_extra": "x0002_extra_name"}
    assert await _tables(database_url) == FRAMEWORK_TABLES | {"dotmac_extra_keys"}

    upgrade_database(database_url)
    assert current_revisions(database_url) == {
        FRAMEWORK_BRANCH: "f0002_saga_events",
        ISP_BRANCH: "d0003_billing_partitions",
        HTTP_BRANCH: "h0001_api_keys",
        "dotmac_extra": "x0002_extra_name",
    }


def test_registering_a_label_at_another_location_is_refused_when_taken(tmp_path, monkeypatch):
    monkeypatch.setattr(migrate_module, "_BRANCHES", dict(migrate_module._BRANCHES))
    with pytest.raises(InvalidInputError, match="already registered"):
        register_schema_branch(ISP_BRANCH, tmp_path)
