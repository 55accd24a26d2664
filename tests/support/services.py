"""Real services for tests: a fresh database per test on SQLite and PostgreSQL, and Redis.

With ``CI=true`` an unreachable service fails the test; elsewhere it skips with a reason,
so a developer without PostgreSQL can still run the SQLite half.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as redis_async
from sqlalchemy.engine import make_url

from dotmac_shared.business_logic.idempotency import RedisIdempotencyStore
from dotmac_shared.business_logic.persistence import engine_of
from dotmac_shared.business_logic.persistence._redis_scripts import RedisClient

#: Admin URL of the PostgreSQL server; each test gets its own database on it.
POSTGRES_URL = os.environ.get(
    "DOTMAC_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("DOTMAC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

_reachable: dict[str, BaseException | None] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (bound once, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


def admin_dsn() -> str:
    """The libpq DSN of the PostgreSQL server's admin database (to create and drop others)."""
    return _dsn(POSTGRES_URL)


async def create_postgres_database(
    prefix: str = "dotmac_test", *, template: str | None = None
) -> str:
    """Create a database named ``<prefix>_<random>`` and return its async SQLAlchemy URL.

    Empty, or a copy of the database named ``template`` (which must have no connection open).
    """
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    copy = f' TEMPLATE "{template}"' if template is not None else ""
    try:
        conn = await asyncpg.connect(admin_dsn(), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        require("PostgreSQL", exc)
        raise
    try:
        await conn.execute(f'CREATE DATABASE "{name}"{copy}')
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


#: The clients a Redis store runs on: redis-py's pooled client and valkey-glide's client
#: (one multiplexed connection).
REDIS_CLIENTS = ["redis-py", "valkey-glide"]


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


async def glide_client(url: str = REDIS_URL, *, timeout: float | None = None) -> Any:
    """A valkey-glide client of the Redis at ``url`` (``redis://host:port/db``).

    It connects on its first command, as redis-py's does, so that an unreachable server
    fails the command rather than the client's creation. ``timeout`` is the request timeout.
    """
    from glide import GlideClient, GlideClientConfiguration, NodeAddress

    parts = urlsplit(url)
    config = GlideClientConfiguration(
        [NodeAddress(parts.hostname or "127.0.0.1", parts.port or 6379)],
        database_id=int(parts.path.strip("/") or 0),
        request_timeout=None if timeout is None else int(timeout * 1000),
        lazy_connect=True,
    )
    return await GlideClient.create(config)


@contextlib.asynccontextmanager
async def redis_client_of(
    client_kind: str, url: str = REDIS_URL, *, timeout: float | None = None
) -> AsyncIterator[RedisClient]:
    """A client of ``client_kind`` (one of :data:`REDIS_CLIENTS`) of the Redis at ``url``.

    ``timeout`` bounds each command (and connecting); the client is closed afterwards.
    """
    if client_kind == "valkey-glide":
        glide = await glide_client(url, timeout=timeout)
        try:
            yield glide
        finally:
            await glide.close()
        return
    client = redis_async.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        yield client
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def fresh_redis_store(client_kind: str = "redis-py") -> AsyncIterator[RedisIdempotencyStore]:
    """A Redis store on ``client_kind`` under a fresh prefix (:func:`fresh_redis_prefix`)."""
    async with fresh_redis_prefix() as prefix, redis_client_of(client_kind) as client:
        yield RedisIdempotencyStore(client, prefix=prefix)


def autoincrement_clause(factory: Any) -> str:
    """What follows ``INTEGER PRIMARY KEY`` in a test table's DDL to number rows itself."""
    return "" if engine_of(factory).dialect.name == "sqlite" else "GENERATED ALWAYS AS IDENTITY"
