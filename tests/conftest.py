"""Fixtures shared by every test: databases on both backends, Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis_async
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from tests.support.services import (
    create_postgres_database,
    drop_postgres_database,
    redis_client,
    sqlite_url,
)

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty, unmigrated database of each backend, dropped afterwards."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture
async def session_factory(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The spec's ``session_factory`` on a freshly migrated database of each backend."""
    factory = create_session_factory(database_url)
    try:
        yield factory
    finally:
        await engine_of(factory).dispose()


@pytest.fixture
async def redis() -> AsyncIterator[redis_async.Redis]:
    """A client of the test Redis; tests namespace their keys with a random prefix."""
    client = await redis_client()
    try:
        yield client
    finally:
        await client.aclose()
