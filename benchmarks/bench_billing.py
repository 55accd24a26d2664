"""Billing run throughput and peak memory for 10,000 and 100,000 customers, SQLite and PostgreSQL.

Each database is seeded by one subprocess and billed by another, so the billing process's
peak RSS is its own: memory that stays flat from 10k to 100k customers shows the run streams
customers in batches instead of loading them all. Set DOTMAC_BENCH_BILLING_SIZES=2000,20000
to try other sizes.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time

from benchmarks.support import create_pg_database, drop_pg_database, print_table, sqlite_url

SIZES = [int(s) for s in os.environ.get("DOTMAC_BENCH_BILLING_SIZES", "10000,100000").split(",")]
PERIOD = "2026-10"


async def _seed(url: str, customers: int) -> dict[str, float]:
    from dotmac_shared.business_logic import create_session_factory
    from dotmac_shared.business_logic.operations import seed_demo_data
    from dotmac_shared.business_logic.persistence import engine_of

    factory = create_session_factory(url)
    start = time.perf_counter()
    try:
        await seed_demo_data(factory, customers=customers)
    finally:
        await engine_of(factory).dispose()
    return {"seconds": time.perf_counter() - start}


async def _bill(url: str, customers: int) -> dict[str, float]:
    from dotmac_shared.business_logic import create_session_factory
    from dotmac_shared.business_logic.operations import run_billing
    from dotmac_shared.business_logic.operations._seed import DEMO_TENANT_ID
    from dotmac_shared.business_logic.persistence import engine_of

    factory = create_session_factory(url, migrate=False)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        outcome = await run_billing(factory, DEMO_TENANT_ID, PERIOD)
    finally:
        await engine_of(factory).dispose()
    elapsed = time.perf_counter() - start
    report = outcome["step_results"]["finalize"]
    assert outcome["status"] == "completed" and report["invoices"] == customers, outcome["error"]
    return {
        "seconds": elapsed,
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child(phase: str, url: str, customers: int) -> None:
    work = _seed if phase == "seed" else _bill
    print(json.dumps(asyncio.run(work(url, customers))))


def _run_child(phase: str, url: str, customers: int) -> dict[str, float]:
    code = f"import benchmarks.bench_billing as b; b._child({phase!r}, {url!r}, {customers})"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    """Seed and bill each size on each database; print customers/s and peak RSS."""
    rows = []
    for backend in ("postgresql", "sqlite"):
        for customers in SIZES:
            url = sqlite_url() if backend == "sqlite" else asyncio.run(create_pg_database())
            try:
                seeded = _run_child("seed", url, customers)
                billed = _run_child("bill", url, customers)
            finally:
                if backend == "postgresql":
                    asyncio.run(drop_pg_database(url))
            rows.append(
                (
                    backend,
                    f"{customers:,}",
                    f"{billed['seconds']:.1f}",
                    f"{customers / billed['seconds']:,.0f}",
                    f"{billed['rss_before_mb']:.0f}",
                    f"{billed['peak_rss_mb']:.0f}",
                    f"{seeded['seconds']:.1f}",
                )
            )
            print(f"  {backend} {customers:,}: billed {billed}, seeded {seeded}", flush=True)
    print_table(
        "Billing run saga end to end (validate, invoice, charge, notify, finalize)",
        [
            "database",
            "customers",
            "run s",
            "customers/s",
            "RSS at start MB",
            "peak RSS MB",
            "seed s",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
