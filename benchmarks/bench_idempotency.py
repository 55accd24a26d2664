"""Idempotency per call: first execution and cached replay, against the bare floors.

On PostgreSQL and SQLite the floors are one bare ``SELECT 1`` round trip and one bare
single-row commit on one held connection. On Redis the floor is one ``PING`` round trip, and
AWS Lambda Powertools' ``idempotent_function`` on its Redis persistence layer runs beside ours
on the same server; ours runs on a valkey-glide client and on a redis-py client, and
also with 50 first calls in flight at once (Powertools' client is synchronous). The cases
alternate for ROUNDS rounds and each figure is the best of its rounds, so that a noisy
moment does not fall on one side only.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as redis_async
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.support import (
    REDIS_URL,
    create_pg_database,
    drop_pg_database,
    per_call_us,
    print_table,
    sqlite_url,
    sync_per_call_us,
)
from dotmac_shared.business_logic import create_session_factory
from dotmac_shared.business_logic.idempotency import (
    IdempotencyKey,
    IdempotencyManager,
    IdempotentOperation,
    RedisIdempotencyStore,
)
from dotmac_shared.business_logic.persistence import engine_of
from dotmac_shared.business_logic.persistence._redis_scripts import RedisClient

N = 400
#: Rounds of every case, alternated; each figure is its best round (this VM is noisy).
ROUNDS = 3


class Noop(IdempotentOperation):
    """The cheapest operation: what is measured is the idempotency machinery."""

    operation_type = "bench_noop"

    async def execute(self, operation_data: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
        return {"order": operation_data["order"], "ok": True}


async def _first_call(manager: IdempotencyManager) -> None:
    """One first execution: a payload, and so a key, never used before."""
    data = {"order": f"o-{uuid.uuid4().hex}", "amount": 10}
    key = IdempotencyKey.generate("bench_noop", "tenant-1", data)
    await manager.execute_idempotent(key, data)


async def _ours(manager: IdempotencyManager, n: int) -> tuple[float, float]:
    async def first() -> None:
        await _first_call(manager)

    data = {"order": "replayed", "amount": 10}
    key = IdempotencyKey.generate("bench_noop", "tenant-1", data)
    await manager.execute_idempotent(key, data)

    async def replay() -> None:
        result = await manager.execute_idempotent(key, data)
        assert result.from_cache

    for _ in range(20):  # warm up pools, statement caches, scripts
        await first()
        await replay()
    return await per_call_us(first, n), await per_call_us(replay, n)


async def _floors(engine: AsyncEngine) -> tuple[float, float]:
    """One bare ``SELECT 1`` round trip and one bare single-row commit, on held connections."""
    async with engine.connect() as raw:
        auto = await raw.execution_options(isolation_level="AUTOCOMMIT")

        async def select_1() -> None:
            await auto.execute(text("SELECT 1"))

        round_trip = await per_call_us(select_1, N)
    async with engine.connect() as conn:

        async def commit() -> None:
            async with conn.begin():
                await conn.execute(
                    text("INSERT INTO bench_floor (id) VALUES (:i)"), {"i": uuid.uuid4().hex}
                )

        one_commit = await per_call_us(commit, N)
    return round_trip, one_commit


async def _sql_case(backend: str) -> list[list[object]]:
    url = sqlite_url() if backend == "sqlite" else await create_pg_database()
    factory = create_session_factory(url)
    engine = engine_of(factory)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("CREATE TABLE bench_floor (id VARCHAR(64) PRIMARY KEY)"))
            await conn.commit()
        manager = IdempotencyManager(factory)
        round_trip = one_commit = first = replay = float("inf")
        for _ in range(ROUNDS):  # alternate floors and ours; keep the best of each
            floors = await _floors(engine)
            round_trip, one_commit = min(round_trip, floors[0]), min(one_commit, floors[1])
            ours = await _ours(manager, N)
            first, replay = min(first, ours[0]), min(replay, ours[1])
    finally:
        await engine.dispose()
        if backend == "postgresql":
            await drop_pg_database(url)
    return [
        [backend, "bare SELECT 1 round trip", f"{round_trip:.0f}", "1.00x", ""],
        [backend, "bare single-row commit", f"{one_commit:.0f}", "", "1.00x"],
        [
            backend,
            "dotmac first execution",
            f"{first:.0f}",
            "",
            f"{first / one_commit:.2f}x (target <= 3x)",
        ],
        [
            backend,
            "dotmac cached replay",
            f"{replay:.0f}",
            f"{replay / round_trip:.2f}x (target <= 2x)",
            "",
        ],
    ]


def powertools_us(n: int) -> tuple[float, float, float]:
    """Powertools' first execution, cached replay and its client's PING, µs per call."""
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
    from aws_lambda_powertools.utilities.idempotency.persistence.redis import (
        RedisCachePersistenceLayer,
    )

    client = redis.Redis.from_url(REDIS_URL)
    layer = RedisCachePersistenceLayer(client=client)

    @idempotent_function(
        data_keyword_argument="order", persistence_store=layer, config=IdempotencyConfig()
    )
    def process(order: dict) -> dict:
        return {"order": order["order"], "ok": True}

    counter = iter(range(10**9))
    replayed = {"order": f"pt-{uuid.uuid4().hex}", "amount": 10}
    process(order=replayed)
    first = sync_per_call_us(
        lambda: process(order={"order": f"pt-{uuid.uuid4().hex}-{next(counter)}"}), n, 3
    )
    replay = sync_per_call_us(lambda: process(order=replayed), n, 3)
    ping = sync_per_call_us(client.ping, n, 3)
    # Its records live an hour; delete them so that they do not pile up in the test Redis.
    for name in client.scan_iter(match=f"{layer.function_name}*", count=1000):
        client.delete(name)
    client.close()
    return first, replay, ping


def _versus(theirs: float, ours: float) -> str:
    """Powertools' time beside dotmac's, as the factor by which the slower one is slower."""
    if theirs >= ours:
        return f"dotmac {theirs / ours:.2f}x faster"
    return f"dotmac {ours / theirs:.2f}x SLOWER"


async def _in_flight_us(manager: IdempotencyManager, n: int, width: int = 50) -> float:
    """Wall time per first call with ``width`` calls in flight at once."""

    async def caller() -> None:
        for _ in range(n // width):
            await _first_call(manager)

    await asyncio.gather(*(caller() for _ in range(width)))  # warm up: connections, scripts
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(width)))
    return (time.perf_counter() - started) / (n // width * width) * 1e6


async def glide_client() -> Any:
    """A valkey-glide client of the benchmark Redis (``REDIS_URL``)."""
    from glide import GlideClient, GlideClientConfiguration, NodeAddress

    url = urlsplit(REDIS_URL)
    config = GlideClientConfiguration(
        [NodeAddress(url.hostname or "127.0.0.1", url.port or 6379)],
        database_id=int(url.path.strip("/") or 0),
    )
    return await GlideClient.create(config)


def _ping(client: Any) -> Any:
    """The client's PING, as a call of no arguments."""
    if isinstance(client, redis_async.Redis):
        return client.ping
    return lambda: client.custom_command(["PING"])


async def _redis_case() -> list[list[object]]:
    pooled = redis_async.Redis.from_url(REDIS_URL)
    glide = await glide_client()
    prefix = f"dotmac:bench:{uuid.uuid4().hex}:"
    clients: dict[str, RedisClient] = {"valkey-glide": glide, "redis-py client": pooled}
    best: dict[str, float] = {}

    def keep(name: str, value: float) -> None:
        best[name] = min(best.get(name, float("inf")), value)

    try:
        managers = {
            label: IdempotencyManager(store=RedisIdempotencyStore(client, prefix=prefix))
            for label, client in clients.items()
        }
        for _ in range(ROUNDS):  # alternate dotmac and Powertools; keep the best of each
            for label, client in clients.items():
                keep(f"ping {label}", await per_call_us(_ping(client), N * 4))
                first, replay = await _ours(managers[label], N * 4)
                keep(f"first {label}", first)
                keep(f"replay {label}", replay)
                keep(f"in flight {label}", await _in_flight_us(managers[label], N * 4))
            pt_first, pt_replay, pt_ping = powertools_us(N * 4)
            keep("first Powertools", pt_first)
            keep("replay Powertools", pt_replay)
            keep("ping Powertools", pt_ping)
    finally:
        async for name in pooled.scan_iter(match=f"{prefix}*", count=1000):
            await pooled.delete(name)
        await glide.close()
        await pooled.aclose()
    rows: list[list[object]] = []
    for label in clients:
        ping = best[f"ping {label}"]
        rows.append(["redis", f"bare PING round trip ({label})", f"{ping:.0f}", "1.00x", ""])
    rows.append(
        ["redis", "bare PING round trip (sync, Powertools')", f"{best['ping Powertools']:.0f}"]
        + ["", ""]
    )
    for case in ("first", "replay"):
        for label in clients:
            us, ping = best[f"{case} {label}"], best[f"ping {label}"]
            name = f"dotmac {'first execution' if case == 'first' else 'cached replay'} ({label})"
            rows.append(["redis", name, f"{us:.0f}", f"{us / ping:.2f}x", ""])
        theirs, ping = best[f"{case} Powertools"], best["ping Powertools"]
        versus = "; ".join(
            f"{_versus(theirs, best[f'{case} {label}'])} ({label})" for label in clients
        )
        name = f"Powertools {'first execution' if case == 'first' else 'cached replay'}"
        rows.append(["redis", name, f"{theirs:.0f}", f"{theirs / ping:.2f}x", versus])
    for label in clients:
        us = best[f"in flight {label}"]
        name = f"dotmac first, 50 in flight ({label})"
        rows.append(["redis", name, f"{us:.0f}", "", f"{1e6 / us:,.0f} calls/s"])
    return rows


async def _all() -> None:
    header = ["store", "case", "µs/call", "vs round trip", "vs commit / vs dotmac"]
    for backend in ("postgresql", "sqlite"):
        print_table(f"Idempotency on {backend}", header, await _sql_case(backend))
    print_table("Idempotency on Redis, beside Powertools", header, await _redis_case())


def main() -> None:
    """Run the idempotency benchmark and print its tables."""
    asyncio.run(_all())


if __name__ == "__main__":
    main()
