"""``dotmac-bl billing``: run a tenant's billing for a period (or retry it), print its report."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.cli._output import (
    DatabaseUrl,
    console,
    fail,
    run_async,
    session_factory,
)
from dotmac_shared.business_logic.cli._saga import print_outcome
from dotmac_shared.business_logic.exceptions import BillingRunError, InvalidInputError
from dotmac_shared.business_logic.operations._billing_math import BillingPeriod
from dotmac_shared.business_logic.operations._billing_run import (
    BillingRunSaga,
    billing_attempts,
    billing_saga,
    next_billing_attempt,
    run_billing,
)
from dotmac_shared.business_logic.operations._coordinator import shipped_coordinator
from dotmac_shared.business_logic.operations.models import BillingRun, Tenant
from dotmac_shared.business_logic.persistence._types import utcnow
from dotmac_shared.business_logic.sagas import SagaCoordinator, SagaResult

__all__ = ["billing_app", "print_attempts", "print_report", "run_billing_with_progress"]

billing_app = typer.Typer(
    no_args_is_help=True, help="Billing runs: run one, retry a compensated one, print its report."
)

Tenant_ = Annotated[str, typer.Option("--tenant", help="The tenant id.")]
Period = Annotated[str, typer.Option("--period", help="The billing period, YYYY-MM.")]
Retry = Annotated[
    bool,
    typer.Option(
        "--retry",
        help="Start a new attempt of a period whose latest attempt was compensated.",
    ),
]

_REPORT_FIELDS = (
    "billing_run_id",
    "tenant_id",
    "billing_period",
    "attempt",
    "invoices",
    "paid",
    "payment_failed",
    "total_invoiced",
    "total_collected",
    "total_outstanding",
    "notifications",
)
_SHOWN_FAILED_CUSTOMERS = 10


def _period(text: str) -> str:
    """The canonical ``YYYY-MM`` of ``text``; refuses a malformed or future period."""
    period = BillingPeriod.parse(text)
    period.ensure_not_future(utcnow())
    return str(period)


async def _require_tenant(factory: async_sessionmaker[AsyncSession], tenant_id: str) -> None:
    async with factory() as session:
        if await session.get(Tenant, tenant_id) is None:
            raise InvalidInputError(f"unknown tenant {tenant_id!r}", field="tenant_id")


async def run_billing_with_progress(
    factory: async_sessionmaker[AsyncSession],
    coordinator: SagaCoordinator,
    tenant_id: str,
    period: str,
    out: Console,
    *,
    poll_seconds: float = 0.2,
    retry: bool = False,
) -> SagaResult:
    """Run (or resume, or with ``retry`` start a new attempt of) a billing run with a progress bar.

    Returns:
        The saga outcome of :func:`run_billing`.

    Raises:
        BillingRunError: ``retry`` when the latest attempt did not end compensated; raised
            before anything runs.
    """
    steps = [step.name for step in BillingRunSaga.create_definition().steps]
    attempts = await billing_attempts(coordinator, tenant_id, period)
    saga_id = next_billing_attempt(attempts, tenant_id, period, retry=retry).saga_id
    run = asyncio.create_task(
        run_billing(factory, tenant_id, period, coordinator=coordinator, retry=retry)
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=out,
    ) as progress:
        bar = progress.add_task("billing run", total=len(steps))
        while not run.done():
            await asyncio.wait({run}, timeout=poll_seconds)
            saga = await billing_saga(coordinator, tenant_id, saga_id)
            if saga is None:  # not created yet; the run itself reports its errors
                continue
            done = sum(1 for step in saga["steps"] if step["status"] == "completed")
            current = next((s["name"] for s in saga["steps"] if s["status"] == "running"), "")
            progress.update(bar, completed=done, description=f"billing run {current}".rstrip())
        outcome = run.result()
        if outcome["status"] == "completed":
            progress.update(bar, completed=len(steps), description="billing run")
    return outcome


def print_report(report: dict[str, Any], out: Console) -> None:
    """Print a finalized billing run's report as a table."""
    table = Table(title="Billing run report")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name in _REPORT_FIELDS:
        if name in report:
            table.add_row(name, escape(str(report[name])))
    failed = list(report.get("failed_customers") or [])
    if failed:
        shown = ", ".join(str(customer) for customer in failed[:_SHOWN_FAILED_CUSTOMERS])
        more = len(failed) - _SHOWN_FAILED_CUSTOMERS
        table.add_row("failed_customers", escape(shown + (f" (+{more} more)" if more > 0 else "")))
    out.print(table)


def print_attempts(runs: list[BillingRun], out: Console) -> None:
    """Print the attempts of a period's billing (oldest first) as a table."""
    table = Table(title="Billing attempts")
    for column in ("attempt", "billing run", "status", "started", "finalized"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            str(run.attempt),
            escape(run.id),
            escape(run.status),
            run.created_at.isoformat(timespec="seconds"),
            run.finalized_at.isoformat(timespec="seconds") if run.finalized_at else "",
        )
    out.print(table)


@billing_app.command("run")
def billing_run(
    tenant: Tenant_,
    period: Period,
    retry: Retry = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Run a tenant's billing for a period (or resume it) with a progress bar.

    With --retry, start a new attempt of a period whose latest attempt was compensated
    (gateway down, tenant or period refused): its void invoices stay void, invoices whose
    charge was already submitted are finished with the same key, nobody is charged twice.
    """

    async def run() -> tuple[SagaResult, bool]:
        canonical = _period(period)
        async with session_factory(database_url) as factory:
            await _require_tenant(factory, tenant)
            coordinator = shipped_coordinator(factory)
            attempts = await billing_attempts(coordinator, tenant, canonical)
            # Refuses a retry (completed, running, never run) before anything is written.
            attempt = next_billing_attempt(attempts, tenant, canonical, retry=retry)
            if attempt.status == "completed":
                return await run_billing(factory, tenant, canonical, coordinator=coordinator), True
            outcome = await run_billing_with_progress(
                factory, coordinator, tenant, canonical, console, retry=retry
            )
            return outcome, False

    outcome, finished_before = run_async(run())
    if outcome["status"] != "completed":
        print_outcome(outcome)
        hint = (
            "; once the cause is fixed, start a new attempt with --retry"
            if outcome["status"] == "compensated"
            else ""
        )
        fail(
            f"billing run of tenant {tenant} for {period} {outcome['status']}: "
            f"{outcome['error']['message'] if outcome['error'] else ''}{hint}"
        )
    if finished_before:
        console.print(
            f"billing run {outcome['saga_id']} had already finished; its report:", highlight=False
        )
    print_report(dict(outcome["step_results"]["finalize"]), console)


@billing_app.command("report")
def billing_report(
    tenant: Tenant_,
    period: Period,
    database_url: DatabaseUrl = None,
) -> None:
    """Print the report of a tenant's finalized billing run for a period.

    The report is the latest attempt's; earlier (compensated) attempts are listed below it.
    """

    async def fetch() -> tuple[dict[str, Any], list[BillingRun]]:
        canonical = str(BillingPeriod.parse(period))
        async with session_factory(database_url, must_exist=True) as factory, factory() as session:
            runs = list(
                (
                    await session.execute(
                        select(BillingRun)
                        .where(
                            BillingRun.tenant_id == tenant, BillingRun.billing_period == canonical
                        )
                        .order_by(BillingRun.attempt)
                    )
                ).scalars()
            )
            if not runs:
                raise InvalidInputError(
                    f"no billing run for tenant {tenant!r} and period {canonical}",
                    field="billing_period",
                )
            run = runs[-1]
            if run.status != "finalized":
                raise BillingRunError(
                    f"billing run {run.id} of tenant {tenant} for {canonical} is {run.status}, "
                    "not finalized: no report yet",
                    billing_run_id=run.id,
                    tenant_id=tenant,
                )
            return dict(run.report), runs

    report, runs = run_async(fetch())
    print_report(report, console)
    if len(runs) > 1:
        print_attempts(runs, console)
