"""``dotmac-bl worker``: the saga recovery worker with the shipped saga definitions."""

from __future__ import annotations

from typing import Annotated

import typer

from dotmac_shared.business_logic.cli._output import (
    DatabaseUrl,
    console,
    run_async,
    session_factory,
)
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
    once: Annotated[
        bool, typer.Option("--once", help="Run one recovery pass, print the count, exit.")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Recover sagas whose worker died (expired lease) until SIGINT/SIGTERM.

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
            if once:
                return await saga_worker.run_once()
            console.print(
                f"worker {saga_worker.coordinator.owner_id} started "
                f"(lease {lease_seconds:g} s); stop with Ctrl-C or SIGTERM",
                soft_wrap=True,
                highlight=False,
            )
            return await saga_worker.run(handle_signals=True)

    taken = run_async(work())
    if once:
        console.print(f"recovery pass took up {_plural(taken)}", highlight=False)
    else:
        console.print(f"worker stopped after recovering {_plural(taken)}", highlight=False)
