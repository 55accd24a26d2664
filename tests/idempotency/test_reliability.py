"""Real processes race for one key, and a holder really dies (SIGKILL) mid-operation.

Each runs with the SQL store and with the Redis store on a valkey-glide client (the
operation's effects are counted in the SQL database either way). On Redis, each process's
50 callers share that one pipelined connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from dotmac_shared.business_logic import OperationInProgressError, create_session_factory
from dotmac_shared.business_logic.clock import SYSTEM_CLOCK, Clock, ManualClock
from dotmac_shared.business_logic.idempotency import (
    IdempotencyKey,
    IdempotencyManager,
    RedisIdempotencyStore,
)
from dotmac_shared.business_logic.persistence import engine_of
from tests.idempotency.operations import EFFECTS_DDL, RecordEffect
from tests.support.services import autoincrement_clause, fresh_redis_prefix, redis_client_of

pytestmark = pytest.mark.reliability

PROCESSES = 4
TASKS = 50


@pytest.fixture(params=["sql", "redis/valkey-glide"])
async def redis_prefix(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """``None`` for the SQL store; else the key prefix of a Redis store, emptied afterwards."""
    if request.param == "sql":
        yield None
        return
    async with fresh_redis_prefix() as prefix:
        yield prefix


@contextlib.asynccontextmanager
async def manager_on(
    factory, redis_prefix: str | None, clock: Clock = SYSTEM_CLOCK
) -> AsyncIterator[IdempotencyManager]:
    """A manager on the SQL store, or on a Redis store over one valkey-glide client."""
    if redis_prefix is None:
        yield IdempotencyManager(factory, clock=clock)
        return
    async with redis_client_of("valkey-glide") as client:
        store = RedisIdempotencyStore(client, prefix=redis_prefix, clock=clock)
        yield IdempotencyManager(factory, store=store, clock=clock)


async def prepare(factory) -> None:
    auto = autoincrement_clause(factory)
    async with factory() as session, session.begin():
        await session.execute(text(EFFECTS_DDL.format(auto=auto)))


async def effects(factory, key: str) -> list[int]:
    async with factory() as session:
        rows = await session.execute(
            text("SELECT pid FROM idem_test_effects WHERE key = :k ORDER BY id"), {"k": key}
        )
        return [pid for (pid,) in rows]


def _race(
    url: str, redis_prefix: str | None, data: dict, start_at: float, results: multiprocessing.Queue
) -> None:
    async def one(manager: IdempotencyManager, i: int) -> tuple:
        key = IdempotencyKey.generate(RecordEffect.operation_type, "tenant-a", data)
        try:
            # Half the callers wait for the holder's result, half want an answer now.
            result = await manager.execute_idempotent(key, data, wait=20 if i % 2 else None)
        except OperationInProgressError:
            return ("in_progress",)
        return ("ok", result.data["pid"], result.from_cache)

    async def go() -> list[tuple]:
        factory = create_session_factory(url, migrate=False, pool_size=8, max_overflow=0)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        try:
            async with manager_on(factory, redis_prefix) as manager:
                return await asyncio.gather(*(one(manager, i) for i in range(TASKS)))
        finally:
            await engine_of(factory).dispose()

    results.put(asyncio.run(go()))


async def test_body_runs_once_when_200_calls_from_4_processes_race_on_one_key(
    session_factory, database_url, redis_prefix
):
    await prepare(session_factory)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    data = {"id": "race-1", "delay": 0.5}
    start_at = time.time() + 4.0  # spawn start-up takes ~1 s per process on 2 cores
    procs = [
        ctx.Process(target=_race, args=(database_url, redis_prefix, data, start_at, queue))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    outcomes = [o for _ in procs for o in queue.get(timeout=90)]
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    assert len(outcomes) == PROCESSES * TASKS
    ran = await effects(session_factory, "race-1")
    assert len(ran) == 1, f"body ran {len(ran)} times"
    ok = [o for o in outcomes if o[0] == "ok"]
    assert {o[1] for o in ok} == {ran[0]}  # everyone who got a result got the one result
    assert sum(1 for o in ok if not o[2]) == 1  # exactly one caller ran it
    assert len(ok) >= PROCESSES * TASKS // 2  # every waiting caller got it
    assert all(o == ("in_progress",) for o in outcomes if o[0] != "ok")


def _hold_and_hang(url: str, redis_prefix: str | None, data: dict) -> None:
    async def go() -> None:
        key = IdempotencyKey.generate(RecordEffect.operation_type, "tenant-a", data)
        async with manager_on(create_session_factory(url, migrate=False), redis_prefix) as manager:
            await manager.execute_idempotent(key, data, {"hang": True})

    asyncio.run(go())


async def test_key_is_taken_over_and_completes_once_when_its_holder_is_killed(
    session_factory, database_url, redis_prefix
):
    await prepare(session_factory)
    data = {"id": "crash-1"}
    key = IdempotencyKey.generate(RecordEffect.operation_type, "tenant-a", data)
    proc = multiprocessing.get_context("spawn").Process(
        target=_hold_and_hang, args=(database_url, redis_prefix, data)
    )
    proc.start()
    deadline = time.monotonic() + 30
    while not await effects(session_factory, "crash-1"):
        assert time.monotonic() < deadline, "the holder never started the operation"
        await asyncio.sleep(0.05)
    clock = ManualClock()  # stopped while the holder's lease certainly runs
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert proc.exitcode == -signal.SIGKILL

    async with manager_on(session_factory, redis_prefix, clock) as manager:
        with pytest.raises(OperationInProgressError):
            await manager.execute_idempotent(key, data)  # the dead holder's lease still runs
        clock.advance(seconds=RecordEffect.lease_seconds)  # ... until the clock passes it
        result = await manager.execute_idempotent(key, data)
        assert result.success and not result.from_cache and result.claims == 2
        assert result.data["pid"] == os.getpid()
        assert await effects(session_factory, "crash-1") == [proc.pid, os.getpid()]
        again = await manager.execute_idempotent(key, data)
        assert again.from_cache and again.data == result.data
    assert await effects(session_factory, "crash-1") == [proc.pid, os.getpid()]
