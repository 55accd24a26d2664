"""``dotmac-bl worker``: saga recovery with the shipped definitions, and billing partitions.

Beside the recovery loop, ``--concurrency`` loops claim and bill partitions of billing runs
(:class:`BillingPartitionWorker`), so several worker processes bill one run together.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import typer

from dotmac_shared.business_logic.cli._output import (
    DatabaseUrl,
    console,
    run_async,
    session_factory,
)
from dotmac_shared.business_logic.operations import BillingPartitionWorker
from dotmac_shared.business_logic.operations._coordinator import shipped_coordinator
from dotmac_shared.business_logic.sagas import SagaWorker

__all__ = ["worker"]


def _plural(count: int) -> str:
    return f"{count} saga{'s' if count != 1 else ''}"


def worker(
    lease_seconds: Annotated[
        float,
        typer.Option(min=0.1, help="Seconds a worker owns a saga without renewing its lease."),
    ] = 30.0,
    poll_interval: Annotated[
        float, typer.Option(min=0.01, help="Seconds to sleep when a pass found nothing.")
    ] = 1.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Sagas claimed per pass.")] = 20,
    max_backoff: Annotated[
        float,
        typer.Option(min=0.01, help="Longest pause in seconds after failed passes (DB down)."),
    ] = 30.0,
    concurrency: Annotated[
        int,
        typer.Option(
            min=1, help="Billing-run partitions billed at once by this process (claim loops)."
        ),
    ] = 1,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Run one recovery pass, bill the claimable partitions, print the count, exit.",
        ),
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Recover sagas whose worker died (expired lease) and bill partitions of billing runs.

    Runs until SIGINT/SIGTERM. Start as many worker processes as you like against one
    PostgreSQL: each claims billing partitions with FOR UPDATE SKIP LOCKED.

    A pass that fails (the database is unreachable) is logged to stderr and retried after a
    pause that doubles up to --max-backoff; the worker keeps running.
    """

    async def work() -> int:
        async with session_factory(database_url) as factory:
            saga_worker = SagaWorker(
                shipped_coordinator(factory, lease_seconds=lease_seconds),
                poll_interval=poll_interval,
                batch_size=batch_size,
                max_backoff=max_backoff,
            )
            billing = BillingPartitionWorker(
                factory,
                concurrency=concurrency,
                lease_seconds=lease_seconds,
                poll_interval=poll_interval,
                max_backoff=max_backoff,
                worker_id=saga_worker.coordinator.owner_id,
            )
            if once:
                taken = await saga_worker.run_once()
                await billing.run_once()
                return taken
            console.print(
                f"worker {saga_worker.coordinator.owner_id} started "
                f"(lease {lease_seconds:g} s, {concurrency} billing "
                f"partition{'s' if concurrency != 1 else ''} at once); "
                "stop with Ctrl-C or SIGTERM",
                soft_wrap=True,
                highlight=False,
            )
            loop = asyncio.get_running_loop()

            def stop() -> None:
                saga_worker.stop()
                billing.stop()

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop)
            try:
                taken, _ = await asyncio.gather(saga_worker.run(), billing.run())
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(ValueError, RuntimeError):
                        loop.remove_signal_handler(sig)
            console.print(
                f"billed {billing.billed} partition stage{'s' if billing.billed != 1 else ''}",
                highlight=False,
            )
            return taken

    taken = run_async(work())
    if once:
        console.print(f"recovery pass took up {_plural(taken)}", highlight=False)
    else:
        console.print(f"worker stopped after recovering {_plural(taken)}", highlight=False)
