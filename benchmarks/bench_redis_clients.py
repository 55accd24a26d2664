"""Redis clients side by side: PING and the idempotency store, one caller and 50 in flight.

Every client the Redis store can take runs the same cases against the same server in one
run: redis-py's asyncio client with its public options that change the per-command cost
(the default pool, RESP3, one shared connection, a blocking pool of 10 sockets), and
valkey-glide's client (one multiplexed connection, its I/O in a Rust thread). Powertools'
``idempotent_function`` on its Redis layer (a synchronous redis-py client) runs beside them.
The cases alternate for ROUNDS rounds and each figure is the best round's, so that a noisy
moment does not fall on one client only.

For each client: microseconds per call with one caller (its latency), and with 50 callers
in flight at once on one event loop the calls per second and the median call's latency.
Each figure is also given as a ratio to the first client's (``base``).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis_async

# Importing it defines its ``Noop`` operation ("bench_noop"), which the store cases run.
from benchmarks.bench_idempotency import glide_client, powertools_us
from benchmarks.support import REDIS_URL, per_call_us, print_table
from dotmac_shared.business_logic.idempotency import (
    IdempotencyKey,
    IdempotencyManager,
    RedisIdempotencyStore,
)

N = 300
WIDTH = 50
#: Rounds of every case, alternated between clients; each figure is its best round (the
#: machine is shared: the best of many short rounds is the figure least moved by others).
ROUNDS = 8


def _clients() -> dict[str, Callable[[], Awaitable[Any]]]:
    """Each client's name and how to make it (glide's is made by a coroutine)."""

    async def pool() -> Any:
        return redis_async.Redis.from_url(REDIS_URL)

    async def resp3() -> Any:
        return redis_async.Redis.from_url(REDIS_URL, protocol=3)

    async def single() -> Any:
        return redis_async.Redis.from_url(REDIS_URL, single_connection_client=True)

    async def blocking() -> Any:
        return redis_async.Redis(
            connection_pool=redis_async.BlockingConnectionPool.from_url(
                REDIS_URL, max_connections=10
            )
        )

    return {
        "redis-py pool": pool,
        "redis-py pool, RESP3": resp3,
        "redis-py single connection": single,
        "redis-py blocking pool (10)": blocking,
        "valkey-glide": glide_client,
    }


@dataclass
class Figures:
    """The best of each case over the rounds."""

    best: dict[str, float] = field(default_factory=dict)

    def keep(self, case: str, value: float, *, higher_is_better: bool = False) -> None:
        old = self.best.get(case)
        if old is None or (value > old if higher_is_better else value < old):
            self.best[case] = value


async def _in_flight(call: Callable[[], Awaitable[object]], n: int) -> tuple[float, float]:
    """Calls per second and median latency (µs) with WIDTH callers in flight at once."""
    latencies: list[float] = []

    async def caller() -> None:
        for _ in range(n // WIDTH):
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(WIDTH)))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, statistics.median(latencies) * 1e6


def _ping(client: Any) -> Callable[[], Awaitable[object]]:
    if hasattr(client, "ping") and not hasattr(client, "custom_command"):
        return client.ping
    return lambda: client.custom_command(["PING"])


def _cases(client: Any, manager: IdempotencyManager) -> dict[str, Callable[[], Awaitable[Any]]]:
    """PING, a first execution (a key never used before) and a cached replay."""

    async def first() -> None:
        data = {"order": f"o-{uuid.uuid4().hex}", "amount": 10}
        await manager.execute_idempotent(IdempotencyKey.generate("bench_noop", "t", data), data)

    replayed = {"order": "replayed", "amount": 10}
    replay_key = IdempotencyKey.generate("bench_noop", "t", replayed)

    async def replay() -> None:
        result = await manager.execute_idempotent(replay_key, replayed)
        assert result.from_cache or result.data == {"order": "replayed", "ok": True}

    return {"ping": _ping(client), "first": first, "replay": replay}


async def _round(cases: dict[str, Callable[[], Awaitable[Any]]], figures: Figures) -> None:
    for case, call in cases.items():
        figures.keep(f"{case} seq", await per_call_us(call, N, repeat=1))
        rate, p50 = await _in_flight(call, N)
        figures.keep(f"{case} rate", rate, higher_is_better=True)
        figures.keep(f"{case} p50", p50)


async def _close(client: Any) -> None:
    if hasattr(client, "aclose"):
        await client.aclose()
    else:
        await client.close()


async def _measure() -> tuple[dict[str, Figures], Figures]:
    makers = _clients()
    prefix = f"dotmac:bench:{uuid.uuid4().hex}:"
    figures = {name: Figures() for name in makers}
    powertools = Figures()
    clients = {name: await make() for name, make in makers.items()}
    try:
        cases = {
            name: _cases(
                client, IdempotencyManager(store=RedisIdempotencyStore(client, prefix=prefix))
            )
            for name, client in clients.items()
        }
        for client_cases in cases.values():
            await client_cases["replay"]()  # stores the result every replay then reads
            for call in client_cases.values():  # warm up: connections, scripts
                await _in_flight(call, WIDTH * 4)
        for _ in range(ROUNDS):
            for name, client_cases in cases.items():
                await _round(client_cases, figures[name])
            first, replay, ping = powertools_us(N)
            powertools.keep("first seq", first)
            powertools.keep("replay seq", replay)
            powertools.keep("ping seq", ping)
    finally:
        cleaner = redis_async.Redis.from_url(REDIS_URL)
        async for name in cleaner.scan_iter(match=f"{prefix}*", count=1000):
            await cleaner.delete(name)
        await cleaner.aclose()
        for client in clients.values():
            await _close(client)
    return figures, powertools


def _cell(value: float, base: float, *, rate: bool = False) -> str:
    """A figure and its ratio to the base client's: above 1.00x is better either way."""
    ratio = value / base if rate else base / value
    return f"{value:,.0f} ({ratio:.2f}x)"


async def _all() -> None:
    figures, powertools = await _measure()
    base = next(iter(figures.values())).best
    header = ["client", "µs/call", "calls/s, 50 in flight", "p50 µs, 50 in flight"]
    for case, title in (
        ("ping", "PING"),
        ("first", "Idempotency store: first execution"),
        ("replay", "Idempotency store: cached replay"),
    ):
        rows: list[list[object]] = []
        for name, figure in figures.items():
            got = figure.best
            rows.append(
                [
                    name,
                    _cell(got[f"{case} seq"], base[f"{case} seq"]),
                    _cell(got[f"{case} rate"], base[f"{case} rate"], rate=True),
                    _cell(got[f"{case} p50"], base[f"{case} p50"]),
                ]
            )
        pt = powertools.best[f"{case} seq"]
        rows.append(["Powertools (sync redis-py)", _cell(pt, base[f"{case} seq"]), "", ""])
        print_table(f"{title} (ratio: base {next(iter(figures))} / client)", header, rows)
    rows = []
    for name, figure in figures.items():
        first, replay = figure.best["first seq"], figure.best["replay seq"]
        pt_first, pt_replay = powertools.best["first seq"], powertools.best["replay seq"]
        rows.append(
            [
                name,
                f"{pt_replay / replay:.2f}x ({'met' if pt_replay >= 2 * replay else 'NOT met'})",
                f"{pt_first / first:.2f}x ({'met' if pt_first >= first else 'NOT met'})",
            ]
        )
    print_table(
        "Targets: Powertools' time / dotmac's, one caller",
        ["client", "replay (target >= 2x)", "first (target >= 1x)"],
        rows,
    )


def main() -> None:
    """Run the Redis client benchmark and print its tables."""
    asyncio.run(_all())


if __name__ == "__main__":
    main()
