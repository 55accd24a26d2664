"""The billing run saga: reports, replays, refusals, and runs killed mid-way and resumed."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import signal
import time
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from dotmac_shared.business_logic import create_session_factory
from dotmac_shared.business_logic.exceptions import SagaNotFoundError
from dotmac_shared.business_logic.operations import run_billing, seed_demo_data
from dotmac_shared.business_logic.operations._billing_steps import billing_run_id
from dotmac_shared.business_logic.operations._seed import DEMO_TENANT_ID
from dotmac_shared.business_logic.operations.models import GatewayLedgerEntry, Invoice, Payment
from dotmac_shared.business_logic.sagas import SagaCoordinator
from tests.operations.test_billing_steps import expected_total

LEASE = 1.0


async def scalar(factory, stmt):
    async with factory() as session:
        return (await session.execute(stmt)).scalar_one()


async def test_billing_run_reports_counts_and_totals_when_it_completes(session_factory):
    await seed_demo_data(session_factory, customers=120)
    outcome = await run_billing(session_factory, DEMO_TENANT_ID, "2026-10", batch_size=50)
    assert outcome["status"] == "completed", outcome["error"]
    report = outcome["step_results"]["finalize"]
    assert report["invoices"] == 120
    assert Decimal(report["total_invoiced"]) == expected_total(120)
    assert report["paid"] + report["payment_failed"] == 120
    assert report["payment_failed"] == len(report["failed_customers"]) >= 2  # declined tokens
    again = await run_billing(session_factory, DEMO_TENANT_ID, "2026-10")
    assert again["step_results"] == outcome["step_results"]  # a finished run is replayed


@pytest.mark.parametrize(
    ("period", "message"),
    [("2026-13", "YYYY-MM"), ("october", "YYYY-MM"), ("2099-01", "future")],
)
async def test_bad_period_fails_the_run_clearly_when_validating(session_factory, period, message):
    await seed_demo_data(session_factory, customers=3)
    outcome = await run_billing(session_factory, DEMO_TENANT_ID, period)
    assert outcome["status"] == "compensated" and outcome["failed_step"] == "validate_period"
    assert message in outcome["error"]["message"]
    assert await scalar(session_factory, select(func.count()).select_from(Invoice)) == 0


def _bill_until_killed(url: str, period: str) -> None:
    async def go() -> None:
        factory = create_session_factory(url, migrate=False)
        coordinator = SagaCoordinator(factory, lease_seconds=LEASE)
        await run_billing(factory, DEMO_TENANT_ID, period, coordinator=coordinator, batch_size=100)
        await asyncio.sleep(3600)  # finished before the kill: wait for it

    asyncio.run(go())


async def _until_started(
    observer: SagaCoordinator, saga_id: str, proc: multiprocessing.process.BaseProcess
) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            await observer.get_saga(saga_id, tenant_id=DEMO_TENANT_ID)
            return
        except SagaNotFoundError:
            assert proc.is_alive(), "the billing process died before starting its run"
            assert time.monotonic() < deadline, "the billing run never started"
            await asyncio.sleep(0.01)


@pytest.mark.reliability
async def test_runs_killed_at_random_points_resume_to_exactly_once_when_restarted(
    session_factory, database_url
):
    customers = 2000
    await seed_demo_data(session_factory, customers=customers)
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(11)
    active = customers - len([i for i in range(customers) if i % 10 == 0])
    observer = SagaCoordinator(session_factory)
    interrupted = []
    for month in range(1, 11):
        period = f"2026-{month:02d}"
        proc = ctx.Process(target=_bill_until_killed, args=(database_url, period))
        proc.start()
        # Kill it at a random point of its run, which takes 0.5-1 s on this machine: timed
        # from when the run's saga appears, as the process's start-up varies more than that.
        await _until_started(observer, billing_run_id(DEMO_TENANT_ID, period), proc)
        await asyncio.sleep(rng.uniform(0.0, 0.8))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        await asyncio.sleep(LEASE + 0.2)  # the dead run's lease expires; this one resumes it
        try:
            state = await observer.get_saga(
                billing_run_id(DEMO_TENANT_ID, period), tenant_id=DEMO_TENANT_ID
            )
        except SagaNotFoundError:
            state = {"status": "not started"}
        if state["status"] == "running":
            interrupted.append(period)
        outcome = await run_billing(session_factory, DEMO_TENANT_ID, period, batch_size=100)
        assert outcome["status"] == "completed", (period, outcome["error"])
        billed = active if month < 10 else customers  # mid-October starts bill from October
        in_period = Invoice.billing_period == period
        assert await scalar(session_factory, select(func.count()).where(in_period)) == billed
        per_customer = (
            select(func.count())
            .select_from(Invoice)
            .where(in_period)
            .group_by(Invoice.customer_id)
            .having(func.count() > 1)
        )
        async with session_factory() as session:
            assert (await session.execute(per_customer)).first() is None
        total = select(func.sum(Invoice.total)).where(in_period)
        hand = Decimal("54.36") * active if month < 10 else expected_total(customers)
        assert Decimal(str(await scalar(session_factory, total))) == hand
        paid_twice = (
            select(Payment.invoice_id)
            .join(Invoice, Invoice.id == Payment.invoice_id)
            .where(in_period)
            .group_by(Payment.invoice_id)
            .having(func.count() > 1)
        )
        async with session_factory() as session:
            assert (await session.execute(paid_twice)).first() is None
        charges = select(func.count()).select_from(GatewayLedgerEntry)
        invoices = select(func.count()).select_from(Invoice)
        # The gateway's own ledger: at most one charge per invoice, ever.
        assert await scalar(session_factory, charges) <= await scalar(session_factory, invoices)
    assert len(interrupted) >= 3, f"the kills mostly missed the runs: {interrupted}"
