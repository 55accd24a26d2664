"""Real faults under the stores: servers stopped and restarted, connections terminated.

Every fault is caused on a server of the test's own (a throwaway PostgreSQL or redis-server
on a free loopback port, or the test's own SQLite file), or with ``pg_terminate_backend`` on
the test's own database; the shared servers keep running. The caller must only ever see a
:class:`PersistenceError` or an :class:`IdempotencyError`, never a driver's error, and a
result whose body ran must be stored if the store comes back while the lease is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from dotmac_shared.business_logic import (
    IdempotencyResultNotSavedError,
    PersistenceError,
    create_session_factory,
)
from dotmac_shared.business_logic.idempotency import (
    IdempotencyKey,
    IdempotencyManager,
    IdempotencyStore,
    IdempotentOperation,
    RecordStatus,
    RedisIdempotencyStore,
    SqlIdempotencyStore,
    StoredRecord,
)
from dotmac_shared.business_logic.persistence import engine_of
from tests.idempotency.operations import CALLS
from tests.support.postgres_server import PostgresServer
from tests.support.services import (
    REDIS_CLIENTS,
    create_postgres_database,
    drop_postgres_database,
    redis_client_of,
    sqlite_url,
)
from tests.support.throwaway_redis import ThrowawayRedis, throwaway_redis

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(60)]


class FaultAtEnd(IdempotentOperation):
    """Runs ``context["at_end"]`` (the fault) as its body finishes, then returns its result."""

    operation_type = "test_fault_at_end"
    lease_seconds = 10.0  # the window in which the store may come back

    async def execute(self, operation_data: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
        CALLS[operation_data["id"]] += 1
        await context["at_end"]()
        return {
            "id": operation_data["id"],
            "run": CALLS[operation_data["id"]],
            "fee": Decimal("1.5"),
        }


class FaultAtEndShortLease(FaultAtEnd):
    """The same, with a lease that runs out while the store is still down."""

    operation_type = "test_fault_at_end_short_lease"
    lease_seconds = 1.0


def payload() -> dict[str, str]:
    return {"id": uuid.uuid4().hex}


def claim(key: str) -> StoredRecord:
    now = dt.datetime.now(dt.UTC)
    return StoredRecord(
        tenant_id="t",
        key=key,
        operation_type="op",
        payload_hash="h",
        status=RecordStatus.IN_PROGRESS,
        attempts=1,
        lease_owner="w1",
        lease_expires_at=now + dt.timedelta(seconds=30),
        expires_at=now + dt.timedelta(hours=1),
        created_at=now,
    )


def assert_translated(error: BaseException) -> None:
    """A :class:`PersistenceError` whose cause is the driver's or network's own error."""
    assert isinstance(error, PersistenceError), f"{type(error).__name__} crossed the boundary"
    assert error.__cause__ is not None and not isinstance(error.__cause__, PersistenceError)
    assert "[SQL:" not in str(error)  # no statement, no parameters (customer data) in it


async def every_primitive_fails_with_persistence_error(store: IdempotencyStore) -> None:
    held = claim(f"after-{uuid.uuid4().hex}")
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get("t", held.key),
        lambda: store.insert_or_get(held),
        lambda: store.replace(held, held.evolve(attempts=2)),
        lambda: store.finish(held.evolve(status=RecordStatus.COMPLETED, result={})),
        lambda: store.renew(held, held.created_at + dt.timedelta(minutes=1)),
        lambda: store.release(held),
    ]
    for call in calls:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is what is checked
            await call()
        assert_translated(caught.value)


# -- one error type at the boundary ---------------------------------------------------------


@dataclass
class Broken:
    """A store, and how to break the database under it for real."""

    store: SqlIdempotencyStore
    kill: Callable[[], None]


@pytest.fixture(params=["sqlite", "postgresql"])
async def breakable_sql_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Broken]:
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
        factory = create_session_factory(url)
        database = Path(make_url(url).database or "")

        def kill() -> None:
            # The files under the open connections hold no database any more: the WAL index
            # (-shm) too, or a connection would go on reading the pages it maps.
            for suffix in ("", "-wal", "-shm"):
                name = database.with_name(database.name + suffix)
                if name.exists():
                    name.write_bytes(b"this is not an SQLite database" * 1000)

        try:
            yield Broken(SqlIdempotencyStore(factory), kill)
        finally:
            await engine_of(factory).dispose()
        return
    with PostgresServer() as server:
        factory = create_session_factory(server.url)
        try:
            yield Broken(SqlIdempotencyStore(factory), server.stop)
        finally:
            await engine_of(factory).dispose()


async def test_sql_store_raises_persistence_error_when_its_database_fails_under_it(
    breakable_sql_store: Broken,
):
    store = breakable_sql_store.store
    assert await store.insert_or_get(claim("before")) is None  # pooled connections exist now
    breakable_sql_store.kill()
    await every_primitive_fails_with_persistence_error(store)
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is what is checked
        await store.purge_expired(dt.datetime.now(dt.UTC))
    assert_translated(caught.value)
    data = payload()
    key = IdempotencyKey.generate(FaultAtEnd.operation_type, "t", data)
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is what is checked
        await IdempotencyManager(store=store).execute_idempotent(key, data)
    assert_translated(caught.value)
    assert CALLS[data["id"]] == 0


@pytest.mark.parametrize("client_kind", REDIS_CLIENTS)
async def test_redis_store_raises_persistence_error_when_its_server_is_stopped(
    tmp_path: Path, client_kind: str
):
    with throwaway_redis(tmp_path) as server:
        async with redis_client_of(client_kind, server.url, timeout=2) as client:
            store = RedisIdempotencyStore(client)
            assert await store.insert_or_get(claim("before")) is None  # connected now
            server.stop()
            await every_primitive_fails_with_persistence_error(store)


# -- a result that ran is not lost ----------------------------------------------------------


async def terminate_other_backends(url: str) -> None:
    """``pg_terminate_backend`` on every other connection to the database of ``url``."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn, timeout=5)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()


async def test_result_is_saved_when_the_store_connections_are_terminated_as_the_body_ends():
    url = await create_postgres_database()
    factory = create_session_factory(url)
    try:
        manager = IdempotencyManager(factory)
        data = payload()
        key = IdempotencyKey.generate(FaultAtEnd.operation_type, "t", data)
        warm = payload()  # pooled connections to the store exist before the fault
        await manager.execute_idempotent(
            IdempotencyKey.generate(FaultAtEnd.operation_type, "t", warm),
            warm,
            {"at_end": lambda: asyncio.sleep(0)},
        )

        result = await manager.execute_idempotent(
            key, data, {"at_end": lambda: terminate_other_backends(url)}
        )
        assert result.success and not result.from_cache
        again = await manager.execute_idempotent(key, data, {"at_end": lambda: asyncio.sleep(0)})
        assert again.from_cache and again.data == result.data
        assert again.data["fee"] == Decimal("1.5")
        assert CALLS[data["id"]] == 1
    finally:
        await engine_of(factory).dispose()
        await drop_postgres_database(url)


@dataclass
class Restartable:
    """A manager on a store whose server the test can stop and start."""

    manager: IdempotencyManager
    server: PostgresServer | ThrowawayRedis


@contextlib.asynccontextmanager
async def restartable(kind: str, tmp_path: Path) -> AsyncIterator[Restartable]:
    if kind == "postgresql":
        with PostgresServer() as pg:
            factory = create_session_factory(pg.url)
            try:
                yield Restartable(IdempotencyManager(factory), pg)
            finally:
                await engine_of(factory).dispose()
        return
    # Appended to its file at every write: a restart brings the claim back.
    with throwaway_redis(tmp_path, persistence="aof") as redis_server:
        async with redis_client_of(
            kind.removeprefix("redis/"), redis_server.url, timeout=2
        ) as client:
            store = RedisIdempotencyStore(client)
            yield Restartable(IdempotencyManager(store=store), redis_server)


STORE_KINDS = ["postgresql", *(f"redis/{client}" for client in REDIS_CLIENTS)]


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_result_is_saved_when_the_server_restarts_while_the_lease_is_held(
    kind: str, tmp_path: Path
):
    async with restartable(kind, tmp_path) as setup:
        restarted: list[asyncio.Task[None]] = []

        async def restart_later() -> None:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(setup.server.start)

        async def stop_and_restart() -> None:
            await asyncio.to_thread(setup.server.stop)
            restarted.append(asyncio.create_task(restart_later()))

        data = payload()
        key = IdempotencyKey.generate(FaultAtEnd.operation_type, "t", data)
        result = await setup.manager.execute_idempotent(key, data, {"at_end": stop_and_restart})
        await restarted[0]
        assert result.success and not result.from_cache
        again = await setup.manager.execute_idempotent(
            key, data, {"at_end": lambda: asyncio.sleep(0)}
        )
        assert again.from_cache and again.data == result.data
        assert CALLS[data["id"]] == 1


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_result_not_saved_error_is_raised_when_the_server_stays_down_past_the_lease(
    kind: str, tmp_path: Path
):
    async with restartable(kind, tmp_path) as setup:
        data = payload()
        key = IdempotencyKey.generate(FaultAtEndShortLease.operation_type, "t", data)

        async def stop() -> None:
            await asyncio.to_thread(setup.server.stop)

        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(IdempotencyResultNotSavedError) as caught:
            await setup.manager.execute_idempotent(key, data, {"at_end": stop})
        # It kept trying while the lease held, and gave up about when it ran out.
        assert 0.5 <= loop.time() - started < FaultAtEndShortLease.lease_seconds + 5
        assert caught.value.metadata["tries"] >= 2
        assert_translated(caught.value.__cause__)
        assert caught.value.idempotency_key == key.key
        assert CALLS[data["id"]] == 1
