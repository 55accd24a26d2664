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
from tests.support.services import (
    REDIS_CLIENTS,
    create_postgres_database,
    drop_postgres_database,
    fresh_redis_store,
    sqlite_url,
)

STORES = ["sqlite", "postgresql", *(f"redis/{client}" for client in REDIS_CLIENTS)]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[IdempotencyStore]:
    """A fresh, empty store of each kind."""
    if request.param.startswith("redis/"):
        async with fresh_redis_store(request.param.removeprefix("redis/")) as redis_store:
            yield redis_store
        return
    url = sqlite_url(tmp_path) if request.param == "sqlite" else await create_postgres_database()
    factory = create_session_factory(url)
    try:
        yield SqlIdempotencyStore(factory)
    finally:
        await engine_of(factory).dispose()
        if request.param == "postgresql":
            await drop_postgres_database(url)


@pytest.fixture
def manager(store: IdempotencyStore) -> IdempotencyManager:
    """A manager on each store."""
    return IdempotencyManager(store=store)
