"""Idempotency-Key over HTTP: this middleware against asgi-idempotency-header and no middleware.

One tiny FastAPI app (``POST /orders`` answers 201 with a small JSON body) runs three times,
each under its own uvicorn process on loopback: bare, behind :class:`IdempotencyMiddleware` on
the Redis store, and behind ``asgi-idempotency-header``'s middleware on its Redis backend,
both on the same Redis server with redis-py. A client process (httpx, keep-alive) measures:

- ``first``: every request carries a new key (claim, run, store);
- ``replay``: every request carries the same, already stored key;
- ``bare``: the route without any middleware, without a key.

Each is measured sequentially (the median request's microseconds; the lowest median of ten
50-request batches) and with 50 requests in flight (requests per second; the best of ROUNDS
rounds). The cases alternate, so that a noisy moment does not fall on one case only. Ratios
are to this middleware's figure; the last lines compare a replay with the bare route plus one
Redis round trip (a PING from the client, measured the same way).

The peer stores only JSON bodies, does not fingerprint the request and does not scope keys;
a crash between its claim and its store leaves the key answering 409 for good. It is measured
because it is the Python middleware most often suggested for the header.

Run: ``python -m benchmarks http``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import redis.asyncio as redis_async

from benchmarks.support import REDIS_URL, print_table

#: Sequential requests per batch, and batches of each case (alternated between cases): the
#: figure is the lowest batch median, the one least moved by other work on a shared machine.
SEQUENTIAL = 50
SEQUENTIAL_ROUNDS = 10
IN_FLIGHT = 50
CONCURRENT = 300
ROUNDS = 3
VARIANTS = ("dotmac", "peer", "bare")
ROOT = Path(__file__).resolve().parents[1]


# -- the servers ---------------------------------------------------------------------------


def build_app(variant: str, prefix: str) -> object:
    """The app of ``variant`` (run in the server process)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()
    counter = iter(range(1, 1 << 62))

    @app.post("/orders")
    async def create_order() -> JSONResponse:
        return JSONResponse({"order": next(counter), "amount": "12.50"}, status_code=201)

    client = redis_async.Redis.from_url(REDIS_URL)
    if variant == "dotmac":
        from dotmac_shared.business_logic.http import IdempotencyMiddleware
        from dotmac_shared.business_logic.idempotency import (
            IdempotencyManager,
            RedisIdempotencyStore,
        )

        store = RedisIdempotencyStore(client, prefix=f"{prefix}dotmac:")
        app.add_middleware(IdempotencyMiddleware, manager=IdempotencyManager(store=store))
    elif variant == "peer":
        from idempotency_header_middleware import IdempotencyHeaderMiddleware
        from idempotency_header_middleware.backends.redis import RedisBackend

        backend = RedisBackend(
            client, keys_key=f"{prefix}peer:keys", response_key=f"{prefix}peer:responses:"
        )
        app.add_middleware(IdempotencyHeaderMiddleware, backend=backend)
    return app


def serve(variant: str, port: int, prefix: str) -> None:
    """Run one variant under uvicorn until killed."""
    import uvicorn

    uvicorn.run(
        build_app(variant, prefix),  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        # The client keeps connections idle while other cases run: a server closing them
        # after its default 5 s would race the client's reuse of them.
        timeout_keep_alive=300,
    )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def servers(prefix: str) -> Iterator[dict[str, str]]:
    """Start every variant's server; yield their base URLs once each answers."""
    processes: list[subprocess.Popen[bytes]] = []
    bases: dict[str, str] = {}
    try:
        for variant in VARIANTS:
            port = _free_port()
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.bench_http",
                        "serve",
                        variant,
                        str(port),
                        prefix,
                    ],
                    cwd=ROOT,
                )
            )
            bases[variant] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        for base in bases.values():
            while True:
                try:
                    httpx.post(f"{base}/orders", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        yield bases
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)


# -- the client ----------------------------------------------------------------------------


def _key(value: str) -> dict[str, str]:
    # Both middlewares read the header's value; this one as a Structured Field String.
    return {"Idempotency-Key": f'"{value}"'}


async def _sequential(client: httpx.AsyncClient, headers: list[dict[str, str]]) -> float:
    """The median request's microseconds, one request at a time."""
    latencies = []
    for header in headers:
        start = time.perf_counter()
        response = await client.post("/orders", headers=header)
        latencies.append(time.perf_counter() - start)
        assert response.status_code == 201, response.text
    return statistics.median(latencies) * 1e6


async def _concurrent(client: httpx.AsyncClient, headers: list[dict[str, str]]) -> float:
    """Requests per second with IN_FLIGHT requests in flight."""
    queue = iter(headers)

    async def worker() -> None:
        for header in queue:
            response = await client.post("/orders", headers=header)
            assert response.status_code == 201, response.text

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return len(headers) / (time.perf_counter() - start)


def _headers(case: str, count: int, replay_key: str) -> list[dict[str, str]]:
    if case == "bare":
        return [{}] * count
    if case == "replay":
        return [_key(replay_key)] * count
    return [_key(uuid.uuid4().hex) for _ in range(count)]


@asynccontextmanager
async def _clients(bases: dict[str, str]) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    clients = {
        variant: httpx.AsyncClient(base_url=base, limits=limits, timeout=30)
        for variant, base in bases.items()
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


async def _ping_us(redis: redis_async.Redis) -> float:
    """The lowest batch median of a PING's round trip, microseconds."""
    best = float("inf")
    for _ in range(SEQUENTIAL_ROUNDS):
        latencies = []
        for _ in range(SEQUENTIAL):
            start = time.perf_counter()
            await redis.ping()
            latencies.append(time.perf_counter() - start)
        best = min(best, statistics.median(latencies) * 1e6)
    return best


async def _measure(bases: dict[str, str]) -> tuple[dict[tuple[str, str], list[float]], float]:
    cases = [
        ("dotmac", "first"),
        ("dotmac", "replay"),
        ("peer", "first"),
        ("peer", "replay"),
        ("bare", "bare"),
    ]
    best: dict[tuple[str, str], list[float]] = {case: [float("inf"), 0.0] for case in cases}
    redis = redis_async.Redis.from_url(REDIS_URL)
    try:
        ping = await _ping_us(redis)
        async with _clients(bases) as clients:
            replay_key = uuid.uuid4().hex
            for variant in ("dotmac", "peer"):  # store the replayed response; warm up
                await clients[variant].post("/orders", headers=_key(replay_key))
            for client in clients.values():
                await _concurrent(client, [{}] * IN_FLIGHT * 2)
            for _ in range(SEQUENTIAL_ROUNDS):
                for variant, case in cases:
                    us = await _sequential(clients[variant], _headers(case, SEQUENTIAL, replay_key))
                    best[(variant, case)][0] = min(best[(variant, case)][0], us)
            for _ in range(ROUNDS):
                for variant, case in cases:
                    rps = await _concurrent(
                        clients[variant], _headers(case, CONCURRENT, replay_key)
                    )
                    best[(variant, case)][1] = max(best[(variant, case)][1], rps)
    finally:
        await redis.aclose()
    return best, ping


async def _cleanup(prefix: str) -> None:
    redis = redis_async.Redis.from_url(REDIS_URL)
    try:
        names = [name async for name in redis.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(names), 500):
            await redis.delete(*names[start : start + 500])
    finally:
        await redis.aclose()


def _report(best: dict[tuple[str, str], list[float]], ping: float) -> None:
    rows = []
    for case in ("first", "replay"):
        ours_us, ours_rps = best[("dotmac", case)]
        for variant in ("dotmac", "peer"):
            us, rps = best[(variant, case)]
            rows.append(
                [
                    f"{variant} {case}",
                    f"{us:.0f}",
                    f"{1e6 / us:.0f}",
                    f"{us / ours_us:.2f}",
                    f"{rps:.0f}",
                    f"{ours_rps / rps:.2f}",
                ]
            )
    bare_us, bare_rps = best[("bare", "bare")]
    ours_us, ours_rps = best[("dotmac", "replay")]
    rows.append(
        [
            "bare route",
            f"{bare_us:.0f}",
            f"{1e6 / bare_us:.0f}",
            f"{bare_us / ours_us:.2f}",
            f"{bare_rps:.0f}",
            f"{ours_rps / bare_rps:.2f}",
        ]
    )
    print_table(
        f"POST /orders over loopback (uvicorn, one worker; Redis: redis-py). Sequential: "
        f"median request, best of {SEQUENTIAL_ROUNDS} batches; in flight: best of {ROUNDS}. "
        f"Ratios: time / dotmac's, dotmac's req/s / req/s; the bare route's against dotmac replay",
        ["case", "us/req seq", "1/median", "x dotmac", f"req/s {IN_FLIGHT} in flight", "dotmac /"],
        rows,
    )
    budget = bare_us + ping
    verdict = "met" if ours_us <= budget else "MISSED"
    print(
        f"\nreplay target: dotmac replay {ours_us:.0f} us <= bare {bare_us:.0f} us + one Redis "
        f"round trip {ping:.0f} us = {budget:.0f} us: {verdict}"
    )
    for case in ("first", "replay"):
        ours, peer = best[("dotmac", case)][0], best[("peer", case)][0]
        print(
            f"{case}: dotmac {ours:.0f} us vs peer {peer:.0f} us: "
            f"{'faster' if ours < peer else 'NOT faster'}"
        )


def main() -> None:
    """Start the three servers, measure, print the table, clean Redis up."""
    prefix = f"bench:http:{uuid.uuid4().hex[:8]}:"
    try:
        with servers(prefix) as bases:
            best, ping = asyncio.run(_measure(bases))
    finally:
        asyncio.run(_cleanup(prefix))
    _report(best, ping)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        main()
