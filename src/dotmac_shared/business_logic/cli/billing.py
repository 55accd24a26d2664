"""``dotmac-bl billing``: run a tenant's billing for a period, and print a run's report."""

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

from dotmac_shared.business_logic.cli.output import (
    DatabaseUrl,
    console,
    fail,
    run_async,
    session_factory,
)
from dotmac_shared.business_logic.cli.saga import print_outcome, shipped_coordinator
from dotmac_shared.business_logic.exceptions import (
    BillingRunError,
    InvalidInputError,
    SagaNotFoundError,
)
from dotmac_shared.business_logic.operations.billing_math import BillingPeriod
from dotmac_shared.business_logic.operations.billing_run import BillingRunSaga, run_billing
from dotmac_shared.business_logic.operations.billing_steps import billing_run_id
from dotmac_shared.business_logic.persistence.models import BillingRun, Tenant
from dotmac_shared.business_logic.persistence.types import utcnow
from dotmac_shared.business_logic.sagas.coordinator import SagaCoordinator

__all__ = ["billing_app", "print_report", "run_billing_with_progress"]

billing_app = typer.Typer(no_args_is_help=True, help="Billing runs: run one, print its report.")

Tenant_ = Annotated[str, typer.Option("--tenant", help="The tenant id.")]
Period = Annotated[str, typer.Option("--period", help="The billing period, YYYY-MM.")]

_REPORT_FIELDS = (
    "billing_run_id",
    "tenant_id",
    "billing_period",
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
) -> dict[str, Any]:
    """Run (or resume) a billing run while a progress bar follows its saga's steps.

    Returns:
        The saga outcome of :func:`run_billing`.
    """
    steps = [step.name for step in BillingRunSaga.create_definition().steps]
    saga_id = billing_run_id(tenant_id, period)
    run = asyncio.create_task(run_billing(factory, tenant_id, period, coordinator=coordinator))
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
            try:
                saga = await coordinator.get_saga(saga_id, tenant_id=tenant_id)
            except SagaNotFoundError:  # not created yet; the run itself reports its errors
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


@billing_app.command("run")
def billing_run(
    tenant: Tenant_,
    period: Period,
    database_url: DatabaseUrl = None,
) -> None:
    """Run a tenant's billing for a period (or resume it) with a progress bar."""

    async def run() -> tuple[dict[str, Any], bool]:
        canonical = _period(period)
        async with session_factory(database_url) as factory:
            await _require_tenant(factory, tenant)
            coordinator = shipped_coordinator(factory)
            try:
                before = await coordinator.get_saga(
                    billing_run_id(tenant, canonical), tenant_id=tenant
                )
            except SagaNotFoundError:
                before = None
            finished_before = before is not None and before["status"] == "completed"
            if finished_before:
                return await run_billing(factory, tenant, canonical, coordinator=coordinator), True
            outcome = await run_billing_with_progress(
                factory, coordinator, tenant, canonical, console
            )
            return outcome, False

    outcome, finished_before = run_async(run())
    if outcome["status"] != "completed":
        print_outcome(outcome)
        fail(f"billing run of tenant {tenant} for {period} {outcome['status']}: {outcome['error']}")
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
    """Print the report of a tenant's finalized billing run for a period."""

    async def fetch() -> dict[str, Any]:
        canonical = str(BillingPeriod.parse(period))
        async with session_factory(database_url) as factory, factory() as session:
            run = (
                await session.execute(
                    select(BillingRun).where(
                        BillingRun.tenant_id == tenant, BillingRun.billing_period == canonical
                    )
                )
            ).scalar_one_or_none()
            if run is None:
                raise InvalidInputError(
                    f"no billing run for tenant {tenant!r} and period {canonical}",
                    field="billing_period",
                )
            if run.status != "finalized":
                raise BillingRunError(
                    f"billing run {run.id} of tenant {tenant} for {canonical} is {run.status}, "
                    "not finalized: no report yet",
                    billing_run_id=run.id,
                    tenant_id=tenant,
                )
            return dict(run.report)

    print_report(run_async(fetch()), console)
