"""``dotmac-bl idempotency``: maintenance of the idempotency records."""

from __future__ import annotations

from typing import Annotated

import typer

from dotmac_shared.business_logic.cli._output import (
    DatabaseUrl,
    console,
    run_async,
    session_factory,
)
from dotmac_shared.business_logic.idempotency._manager import IdempotencyManager

__all__ = ["idempotency_app"]

idempotency_app = typer.Typer(no_args_is_help=True, help="Idempotency records.")


@idempotency_app.command("purge")
def purge(
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="Records deleted per statement.")
    ] = 1000,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete every expired idempotency record; prints how many."""

    async def run() -> int:
        async with session_factory(database_url) as factory:
            return await IdempotencyManager(factory).purge_expired(batch_size=batch_size)

    deleted = run_async(run())
    noun = "record" if deleted == 1 else "records"
    console.print(f"deleted {deleted} expired idempotency {noun}", highlight=False)
