"""Revision d0002 on a database holding outbox rows: statuses derived, and reversible."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from dotmac_shared.business_logic.persistence import _migrate as migrate_module
from dotmac_shared.business_logic.persistence import create_engine

OUTBOX = "dotmac_notification_outbox"
NEW_COLUMNS = {
    "status",
    "attempts",
    "next_attempt_at",
    "claimed_by",
    "last_error",
    "last_error_code",
}


def _alembic(connection, *steps: tuple[str, str]) -> None:
    cfg = migrate_module._alembic_config()
    cfg.attributes["connection"] = connection
    for action, revision in steps:
        getattr(command, action)(cfg, revision)


async def test_existing_rows_become_sent_or_pending_and_the_revision_reverts_when_migrated(
    database_url,
):
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(
                _alembic,
                ("upgrade", "dotmac_framework@head"),
                ("upgrade", "d0001_isp_domain"),
            )
            await conn.execute(
                text(
                    f"INSERT INTO {OUTBOX} (tenant_id, dedupe_key, channel, recipient, template,"
                    " payload, created_at, sent_at) VALUES"
                    " ('t', 'old:sent', 'email', 'a@example.com', 'invoice_issued', '{}',"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),"
                    " ('t', 'old:unsent', 'email', 'b@example.com', 'invoice_issued', '{}',"
                    " CURRENT_TIMESTAMP, NULL)"
                )
            )
            await conn.run_sync(_alembic, ("upgrade", "dotmac_isp@head"))
            found = await conn.execute(
                text(f"SELECT dedupe_key, status, attempts FROM {OUTBOX} ORDER BY dedupe_key")
            )
            assert found.all() == [("old:sent", "sent", 0), ("old:unsent", "pending", 0)]

            await conn.run_sync(_alembic, ("downgrade", "d0001_isp_domain"))
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns(OUTBOX)}
            )
            assert not columns & NEW_COLUMNS
            assert await conn.scalar(text(f"SELECT count(*) FROM {OUTBOX}")) == 2
    finally:
        await engine.dispose()
