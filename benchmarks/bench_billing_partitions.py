"""One billing run of 100,000 customers on PostgreSQL, billed by 1, 2 and 4 worker processes.

The customers are seeded once into a template database; each measured run bills its own copy
(``CREATE DATABASE ... TEMPLATE``), so every run starts from the same rows. Worker 0 drives
the run's saga (and bills partitions while its steps wait), workers 1..N-1 are
``BillingPartitionWorker`` processes. Reported per run: customers/s, the speed-up over one
worker, each worker's peak RSS and CPU seconds, and the CPU seconds of the PostgreSQL backends
serving the run (sampled with psutil from ``pg_stat_activity``; the server's background
processes, such as the WAL writer, are not counted). The machine's cores bound the speed-up:
the workers and PostgreSQL share them. Set DOTMAC_BENCH_PARTITION_CUSTOMERS=5000 and
DOTMAC_BENCH_PARTITION_WORKERS=1,2 to try other sizes.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import time
from typing import Any

from benchmarks.support import _admin_dsn, create_pg_database, drop_pg_database, print_table

CUSTOMERS = int(os.environ.get("DOTMAC_BENCH_PARTITION_CUSTOMERS", "100000"))
WORKERS = [int(n) for n in os.environ.get("DOTMAC_BENCH_PARTITION_WORKERS", "1,2,4").split(",")]
PARTITION_SIZE = int(os.environ.get("DOTMAC_BENCH_PARTITION_SIZE", "1000"))
PERIOD = "2026-10"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _worker(url: str, index: int, go: Any, stop: Any, results: Any) -> None:
    """One worker process: wait for ``go``, bill, report, and hold its connections to ``stop``."""

    async def work() -> None:
        from dotmac_shared.business_logic import create_session_factory
        from dotmac_shared.business_logic.operations import BillingPartitionWorker, run_billing
        from dotmac_shared.business_logic.operations._seed import DEMO_TENANT_ID
        from dotmac_shared.business_logic.persistence import engine_of

        factory = create_session_factory(url, migrate=False)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, go.wait)
        cpu = _cpu_seconds()
        start = time.perf_counter()
        report: dict[str, Any] = {"index": index, "pid": os.getpid()}
        try:
            if index == 0:
                outcome = await run_billing(
                    factory, DEMO_TENANT_ID, PERIOD, partition_size=PARTITION_SIZE
                )
                final = outcome["step_results"]["finalize"]
                assert outcome["status"] == "completed", outcome["error"]
                report["seconds"] = time.perf_counter() - start
                report["invoices"] = final["invoices"]
                report["cpu_s"] = _cpu_seconds() - cpu
                results.put(report)
                # Stay connected until the parent sampled the backends' CPU.
                await loop.run_in_executor(None, stop.wait)
            else:
                helper = BillingPartitionWorker(factory, poll_interval=0.05)
                running = asyncio.create_task(helper.run())
                await loop.run_in_executor(None, stop.wait)
                helper.stop()
                await running
                report["cpu_s"] = _cpu_seconds() - cpu
                report["partition_stages"] = helper.billed
        finally:
            await engine_of(factory).dispose()
        report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.put({**report, "final": True})

    asyncio.run(work())


def _seed(url: str) -> None:
    code = (
        "import asyncio\n"
        "from dotmac_shared.business_logic import create_session_factory\n"
        "from dotmac_shared.business_logic.operations import seed_demo_data\n"
        f"f = create_session_factory({url!r})\n"
        f"asyncio.run(seed_demo_data(f, customers={CUSTOMERS}))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def _copy(template_url: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    url = await create_pg_database("dotmac_bench_part")
    name, template = make_url(url).database, make_url(template_url).database
    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(f'DROP DATABASE "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()
    return url


async def _backend_pids(url: str) -> list[int]:
    import asyncpg
    from sqlalchemy.engine import make_url

    conn = await asyncpg.connect(_admin_dsn())
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1", make_url(url).database
        )
    finally:
        await conn.close()
    return [int(row["pid"]) for row in rows]


def _backend_cpu(url: str, seen: dict[int, float]) -> None:
    """Record the CPU seconds of each backend serving ``url`` (the latest reading per pid)."""
    import psutil

    for pid in asyncio.run(_backend_pids(url)):
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        seen[pid] = max(seen.get(pid, 0.0), times.user + times.system)


def _measure(template_url: str, workers: int) -> dict[str, Any]:
    url = asyncio.run(_copy(template_url))
    ctx = multiprocessing.get_context("spawn")
    go, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, i, go, stop, results)) for i in range(workers)]
    for proc in procs:
        proc.start()
    time.sleep(3)  # imports and engines ready before the clock starts
    backends: dict[int, float] = {}
    try:
        go.set()
        done = None
        while done is None:
            _backend_cpu(url, backends)  # overflow connections may close between samples
            try:
                done = results.get(timeout=0.5)
            except Exception:  # queue.Empty: still billing
                if not procs[0].is_alive():
                    raise RuntimeError("the driving worker died") from None
        _backend_cpu(url, backends)
        stop.set()
        finals = [results.get(timeout=120) for _ in range(workers)]
        for proc in procs:
            proc.join(timeout=60)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        asyncio.run(drop_pg_database(url))
    finals.sort(key=lambda r: r["index"])
    assert done["invoices"] == CUSTOMERS, done
    return {
        "seconds": done["seconds"],
        "rss": [r["peak_rss_mb"] for r in finals],
        "worker_cpu": [done["cpu_s"]] + [r["cpu_s"] for r in finals[1:]],
        "stages": [r.get("partition_stages", 0) for r in finals[1:]],
        "pg_cpu": sum(backends.values()),
        "backends": len(backends),
    }


def main() -> None:
    """Seed once, then bill one run with each number of worker processes; print the table."""
    template = asyncio.run(create_pg_database("dotmac_bench_tpl"))
    try:
        start = time.perf_counter()
        _seed(template)
        print(f"  seeded {CUSTOMERS:,} customers in {time.perf_counter() - start:.1f} s")
        measured = {}
        for workers in WORKERS:
            measured[workers] = result = _measure(template, workers)
            print(f"  {workers} worker(s): {json.dumps(result)}", flush=True)
    finally:
        asyncio.run(drop_pg_database(template))
    one = measured[1]["seconds"] if 1 in measured else None
    rows = []
    for workers, r in measured.items():
        wall = r["seconds"]
        rows.append(
            (
                workers,
                f"{wall:.1f}",
                f"{CUSTOMERS / wall:,.0f}",
                f"{one / wall:.2f}x" if one else "-",
                " / ".join(f"{mb:.0f}" for mb in r["rss"]),
                " / ".join(f"{s:.1f}" for s in r["worker_cpu"]),
                f"{r['pg_cpu']:.1f}",
                f"{(sum(r['worker_cpu']) + r['pg_cpu']) / wall:.2f}",
            )
        )
    print_table(
        f"One billing run of {CUSTOMERS:,} customers on PostgreSQL, partitions of "
        f"{PARTITION_SIZE:,}, on {os.cpu_count()} cores",
        [
            "workers",
            "run s",
            "customers/s",
            "speed-up",
            "peak RSS MB per worker",
            "worker CPU s",
            "PG backends CPU s",
            "cores busy",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
