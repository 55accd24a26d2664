"""Real services for tests: a fresh database per test on SQLite and PostgreSQL, and Redis.

With ``CI=true`` an unreachable service fails the test; elsewhere it skips with a reason,
so a developer without PostgreSQL can still run the SQLite half.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis_async
from sqlalchemy.engine import make_url

from dotmac_shared.business_logic.idempotency import RedisIdempotencyStore
from dotmac_shared.business_logic.persistence import RedisConnection, engine_of

#: Admin URL of the PostgreSQL server; each test gets its own database on it.
POSTGRES_URL = os.environ.get(
    "DOTMAC_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("DOTMAC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

_reachable: dict[str, BaseException | None] = {}


def require(service: str, problem: BaseException | None) -> None:
    """Fail (in CI) or skip (elsewhere) when ``service`` could not be reached."""
    if problem is None:
        return
    message = f"{service} is unreachable: {problem!r}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(message)


def _dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def create_postgres_database() -> str:
    """Create an empty database and return its async SQLAlchemy URL."""
    name = f"dotmac_test_{uuid.uuid4().hex[:16]}"
    try:
        conn = await asyncpg.connect(_dsn(POSTGRES_URL), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        require("PostgreSQL", exc)
        raise
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(url: str) -> None:
    """Drop a database made by :func:`create_postgres_database`, even if still in use."""
    name = make_url(url).database
    conn = await asyncpg.connect(_dsn(POSTGRES_URL), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def sqlite_url(directory: Path) -> str:
    """Return the URL of a fresh SQLite file in ``directory``."""
    return f"sqlite+aiosqlite:///{directory / 'dotmac.db'}"


async def redis_client() -> redis_async.Redis:
    """Return a client of the test Redis, failing in CI (skipping elsewhere) if unreachable."""
    client = redis_async.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, redis_async.RedisError) as exc:
        await client.aclose()
        require("Redis", exc)
        raise
    return client


#: The clients a Redis store runs on: redis-py's pooled client and our pipelined connection.
REDIS_CLIENTS = ["redis-py", "redis-connection"]


@contextlib.asynccontextmanager
async def fresh_redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own in the test Redis; its keys are deleted afterwards."""
    client = await redis_client()
    prefix = f"dotmac:test:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        async for name in client.scan_iter(match=f"{prefix}*"):
            await client.delete(name)
        await client.aclose()


def redis_client_of(client_kind: str) -> RedisConnection | redis_async.Redis:
    """A client of the test Redis of ``client_kind`` (one of :data:`REDIS_CLIENTS`)."""
    if client_kind == "redis-connection":
        return RedisConnection.from_url(REDIS_URL)
    return redis_async.Redis.from_url(REDIS_URL)


@contextlib.asynccontextmanager
async def fresh_redis_store(client_kind: str = "redis-py") -> AsyncIterator[RedisIdempotencyStore]:
    """A Redis store on ``client_kind`` under a fresh prefix (:func:`fresh_redis_prefix`)."""
    async with fresh_redis_prefix() as prefix:
        client = redis_client_of(client_kind)
        try:
            yield RedisIdempotencyStore(client, prefix=prefix)
        finally:
            await client.aclose()


def autoincrement_clause(factory: Any) -> str:
    """What follows ``INTEGER PRIMARY KEY`` in a test table's DDL to number rows itself."""
    return "" if engine_of(factory).dialect.name == "sqlite" else "GENERATED ALWAYS AS IDENTITY"
