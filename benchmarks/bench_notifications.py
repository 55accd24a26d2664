"""The notification relay's throughput: queued notices e-mailed into a local SMTP server.

N invoice notices are queued (PostgreSQL; SQLite for reference), then 1 or 2 relay
processes deliver them (``NotificationRelay.run_once``, batches of 50) into an aiosmtpd
server running in a process of its own (its ``Sink`` handler accepts and drops). Each relay
process imports and connects first, then all start together; the time is from that start
until every relay has finished. Set DOTMAC_BENCH_NOTICES to change N (3060 by default: the
notices of the demo's 3,000-customer billing run).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

from benchmarks.support import create_pg_database, drop_pg_database, print_table, sqlite_url

NOTICES = int(os.environ.get("DOTMAC_BENCH_NOTICES", "3060"))
BATCH = 50


async def _queue(url: str, count: int) -> None:
    from dotmac_shared.business_logic import create_session_factory
    from dotmac_shared.business_logic.operations import OutboxNotifier
    from dotmac_shared.business_logic.operations._ports import Notification
    from dotmac_shared.business_logic.persistence import engine_of

    factory = create_session_factory(url)
    notices = [
        Notification(
            "tenant123",
            f"cust_{n:06d}@example.com",
            "invoice_issued",
            {"invoice_id": f"inv_{n:06d}", "total": "49.99", "period": "2026-10"},
            f"inv_{n:06d}:issued",
        )
        for n in range(count)
    ]
    try:
        for start in range(0, count, 1000):
            async with factory() as session, session.begin():
                await OutboxNotifier().notify_many(session, notices[start : start + 1000])
    finally:
        await engine_of(factory).dispose()


async def _counts(url: str) -> dict[str, int]:
    from dotmac_shared.business_logic import create_session_factory
    from dotmac_shared.business_logic.operations.notifications import outbox_counts
    from dotmac_shared.business_logic.persistence import engine_of

    factory = create_session_factory(url, migrate=False)
    try:
        return (await outbox_counts(factory)).as_dict()
    finally:
        await engine_of(factory).dispose()


async def _relay_worker(url: str, smtp_url: str) -> None:
    """One relay process: get ready, wait for "go" on stdin, relay, print its report."""
    from dotmac_shared.business_logic import create_session_factory
    from dotmac_shared.business_logic.operations.notifications import (
        NotificationRelay,
        SmtpTransport,
    )
    from dotmac_shared.business_logic.persistence import engine_of

    factory = create_session_factory(url, migrate=False)
    relay = NotificationRelay(factory, [SmtpTransport(smtp_url)], batch_size=BATCH)
    async with factory() as session:  # connect before the start
        await session.connection()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    try:
        report = await relay.run_once()
    finally:
        await relay.aclose()
        await engine_of(factory).dispose()
    print(json.dumps(report.as_dict()), flush=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _smtp_server() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"]
        + ["-c", "aiosmtpd.handlers.Sink"]
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"smtp://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.05)


def _measure(url: str, smtp_url: str, relays: int) -> tuple[float, int]:
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_notifications", "--relay", url, smtp_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(relays)
    ]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    sent = 0
    for worker in workers:
        assert worker.stdout is not None
        sent += json.loads(worker.stdout.readline())["sent"]
    elapsed = time.perf_counter() - start
    for worker in workers:
        worker.communicate(timeout=60)
    return elapsed, sent


def main() -> None:
    server, smtp_url = _smtp_server()
    rows = []
    try:
        for backend, relays in (("PostgreSQL", 1), ("PostgreSQL", 2), ("SQLite", 1)):
            url = asyncio.run(create_pg_database()) if backend == "PostgreSQL" else sqlite_url()
            try:
                asyncio.run(_queue(url, NOTICES))
                elapsed, sent = _measure(url, smtp_url, relays)
                counts = asyncio.run(_counts(url))
                assert sent == NOTICES == counts["sent"], (sent, counts)
                rows.append([backend, relays, NOTICES, f"{elapsed:.2f}", f"{sent / elapsed:.0f}"])
            finally:
                if backend == "PostgreSQL":
                    asyncio.run(drop_pg_database(url))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print_table(
        f"Notification relay into a local aiosmtpd (batches of {BATCH})",
        ["database", "relays", "notices", "seconds", "messages/s"],
        rows,
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--relay"]:
        asyncio.run(_relay_worker(sys.argv[2], sys.argv[3]))
    else:
        main()
