from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select

from dotmac_shared.business_logic.cli import app
from dotmac_shared.business_logic.idempotency import (
    IdempotencyKey,
    IdempotencyManager,
    IdempotentOperation,
)
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from dotmac_shared.business_logic.persistence.models import IdempotencyRecord
from tests.cli.helpers import flat


class CliEcho(IdempotentOperation):
    """Returns its payload; lives one hour."""

    operation_type = "cli_test_echo"
    ttl = dt.timedelta(hours=1)

    async def execute(self, operation_data: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
        return dict(operation_data)


async def _store(url: str, *, expired: int, fresh: int) -> None:
    """Store ``expired`` records that expired a day ago and ``fresh`` live ones."""
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    factory = create_session_factory(url)
    try:
        past = IdempotencyManager(factory, clock=lambda: long_ago)
        now = IdempotencyManager(factory)
        for manager, count, label in ((past, expired, "old"), (now, fresh, "new")):
            for n in range(count):
                data = {"n": n, "label": label}
                key = IdempotencyKey.generate(CliEcho.operation_type, "tenant-x", data)
                result = await manager.execute_idempotent(idempotency_key=key, operation_data=data)
                assert result.success
    finally:
        await engine_of(factory).dispose()


async def _count(url: str) -> int:
    factory = create_session_factory(url)
    try:
        async with factory() as session:
            return int(
                (
                    await session.execute(select(func.count()).select_from(IdempotencyRecord))
                ).scalar_one()
            )
    finally:
        await engine_of(factory).dispose()


def test_purge_deletes_only_expired_records_in_batches_and_says_how_many(runner, db_url):
    asyncio.run(_store(db_url, expired=5, fresh=2))
    assert asyncio.run(_count(db_url)) == 7
    result = runner.invoke(
        app, ["idempotency", "purge", "--batch-size", "2", "--database-url", db_url]
    )
    assert result.exit_code == 0, result.output
    assert "deleted 5 expired idempotency records" in flat(result.stdout)
    assert asyncio.run(_count(db_url)) == 2
    again = runner.invoke(app, ["idempotency", "purge", "--database-url", db_url])
    assert again.exit_code == 0, again.output
    assert "deleted 0 expired idempotency records" in flat(again.stdout)


def test_purge_says_record_in_the_singular_when_one_deleted(runner, db_url):
    asyncio.run(_store(db_url, expired=1, fresh=0))
    result = runner.invoke(app, ["idempotency", "purge", "--database-url", db_url])
    assert "deleted 1 expired idempotency record" in flat(result.stdout)
    assert "records" not in result.stdout


def test_purge_is_a_usage_error_when_batch_size_not_positive(runner, db_url):
    result = runner.invoke(
        app, ["idempotency", "purge", "--batch-size", "0", "--database-url", db_url]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
