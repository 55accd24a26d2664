"""Saga failures as data: ``error`` of sagas and saga steps becomes a JSON document.

A failure is ``{"code", "message", "step", "context"}``. An error stored as text before is
kept as ``{"code": "unexpected_error", "message": <the text>, "step": null, "context": {}}``;
a downgrade keeps the message only.

Revision ID: 0008_saga_structured_errors
Revises: 0007_policy_decisions
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dotmac_shared.business_logic.persistence.types import JSONDocument

revision: str = "0008_saga_structured_errors"
down_revision: str | None = "0007_policy_decisions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("saga_executions", "saga_step_executions")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in _TABLES:
        if postgres:
            op.alter_column(
                table,
                "error",
                type_=JSONDocument,
                existing_nullable=True,
                postgresql_using=(
                    "CASE WHEN error IS NULL THEN NULL ELSE jsonb_build_object('code', "
                    "'unexpected_error', 'message', error, 'step', NULL, 'context', "
                    "'{}'::jsonb) END"
                ),
            )
            continue
        op.execute(
            f"UPDATE {table} SET error = json_object('code', 'unexpected_error', 'message', "  # noqa: S608 - table names are constants
            "error, 'step', NULL, 'context', json('{}')) WHERE error IS NOT NULL"
        )
        with op.batch_alter_table(table) as batch:
            batch.alter_column("error", type_=JSONDocument, existing_nullable=True)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in _TABLES:
        if postgres:
            op.alter_column(
                table,
                "error",
                type_=sa.Text(),
                existing_nullable=True,
                postgresql_using="error ->> 'message'",
            )
            continue
        op.execute(
            f"UPDATE {table} SET error = json_extract(error, '$.message') "  # noqa: S608 - table names are constants
            "WHERE error IS NOT NULL"
        )
        with op.batch_alter_table(table) as batch:
            batch.alter_column("error", type_=sa.Text(), existing_nullable=True)
