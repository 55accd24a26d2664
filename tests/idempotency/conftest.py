"""Every idempotency store under one suite: SQL on SQLite and PostgreSQL, and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dotmac_shared.business_logic.idempotency import (
    IdempotencyManager,
    IdempotencyStore,
    SqlIdempotencyStore,
)
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from tests.support.migrated import MigratedTemplates
from tests.support.services import REDIS_CLIENTS, fresh_redis_store

STORES = ["sqlite", "postgresql", *(f"redis/{client}" for client in REDIS_CLIENTS)]


@pytest.fixture(params=STORES)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_templates: MigratedTemplates
) -> AsyncIterator[IdempotencyStore]:
    """A fresh, empty store of each kind (SQL ones on a copy of a migrated template)."""
    if request.param.startswith("redis/"):
        async with fresh_redis_store(request.param.removeprefix("redis/")) as redis_store:
            yield redis_store
        return
    if request.param == "sqlite":
        url = migrated_templates.sqlite_copy(tmp_path)
    else:
        url = await migrated_templates.postgres_copy()
    factory = create_session_factory(url)
    try:
        yield SqlIdempotencyStore(factory)
    finally:
        await engine_of(factory).dispose()
        if request.param == "postgresql":
            migrated_templates.drop_later(url)


@pytest.fixture
def manager(store: IdempotencyStore) -> IdempotencyManager:
    """A manager on each store."""
    return IdempotencyManager(store=store)
