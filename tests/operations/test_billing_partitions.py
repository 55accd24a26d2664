"""Billing runs spread over workers: partitions claimed by any process, taken over after a kill.

Every report here is compared with the report of the same seed billed by one worker in one
partition, on a database of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from dotmac_shared.business_logic import BillingRunError, InvalidInputError, create_session_factory
from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.operations import (
    BillingPartitionWorker,
    SandboxPaymentGateway,
    run_billing,
    seed_demo_data,
)
from dotmac_shared.business_logic.operations._billing_partitions import (
    INVOICING,
    BillingPartitions,
)
from dotmac_shared.business_logic.operations._billing_steps import billing_run_id
from dotmac_shared.business_logic.operations._ports import ChargeRequest
from dotmac_shared.business_logic.operations._seed import DEMO_TENANT_ID
from dotmac_shared.business_logic.operations.models import (
    BillingPartition,
    Customer,
    GatewayLedgerEntry,
    Invoice,
    Payment,
    Tenant,
)
from dotmac_shared.business_logic.persistence import engine_of
from dotmac_shared.business_logic.sagas import SagaCoordinator
from tests.support.services import (
    create_postgres_database,
    drop_postgres_database,
    sqlite_url,
)

PERIOD = "2026-10"
RUN_ID = billing_run_id(DEMO_TENANT_ID, PERIOD)


async def _reference(url: str, customers: int) -> dict[str, Any]:
    """The outcome of one worker billing ``customers`` in one partition on a fresh database."""
    factory = create_session_factory(url)
    try:
        await seed_demo_data(factory, customers=customers)
        outcome = await run_billing(factory, DEMO_TENANT_ID, PERIOD, partition_size=10**9)
    finally:
        await engine_of(factory).dispose()
    assert outcome["status"] == "completed", outcome["error"]
    return dict(outcome["step_results"])


async def reference_outcome(database_url: str, tmp_path: Path, customers: int) -> dict[str, Any]:
    """:func:`_reference` on a second database of the same backend as ``database_url``."""
    if database_url.startswith("sqlite"):
        (tmp_path / "reference").mkdir()
        return await _reference(sqlite_url(tmp_path / "reference"), customers)
    url = await create_postgres_database()
    try:
        return await _reference(url, customers)
    finally:
        await drop_postgres_database(url)


def same_billing(outcome: dict[str, Any], reference: dict[str, Any]) -> None:
    """The steps' results and the report are those of the single worker."""
    for step in ("generate_invoices", "process_payments", "send_notifications", "finalize"):
        assert outcome[step] == reference[step], step


async def scalar(factory, stmt) -> Any:
    async with factory() as session:
        return (await session.execute(stmt)).scalar_one()


async def assert_each_customer_billed_once(factory, customers: int) -> None:
    """One invoice, one payment and one gateway charge per billed customer, none twice."""
    invoices = await scalar(factory, select(func.count()).select_from(Invoice))
    assert invoices == customers
    twice = select(Invoice.customer_id).group_by(Invoice.customer_id).having(func.count() > 1)
    async with factory() as session:
        assert (await session.execute(twice)).first() is None
    assert await scalar(factory, select(func.count()).select_from(Payment)) == invoices
    assert await scalar(factory, select(func.count(func.distinct(Payment.invoice_id)))) == invoices
    ledger = await scalar(factory, select(func.count()).select_from(GatewayLedgerEntry))
    assert ledger == invoices  # one charge per invoice key at the provider, ever


async def partition_rows(factory) -> Sequence[Any]:
    async with factory() as session:
        return (
            (await session.execute(select(BillingPartition).order_by(BillingPartition.partition)))
            .scalars()
            .all()
        )


async def test_report_equals_the_single_worker_report_when_billed_in_many_partitions(
    session_factory, database_url, tmp_path
):
    customers = 45
    reference = await reference_outcome(database_url, tmp_path, customers)
    await seed_demo_data(session_factory, customers=customers)
    helpers: list[BillingPartitionWorker] = []
    if not database_url.startswith("sqlite"):  # on SQLite, one worker
        helpers.append(BillingPartitionWorker(session_factory, concurrency=2, poll_interval=0.01))
    running = [asyncio.create_task(worker.run()) for worker in helpers]
    try:
        outcome = await run_billing(
            session_factory, DEMO_TENANT_ID, PERIOD, partition_size=4, batch_size=3
        )
    finally:
        for worker in helpers:
            worker.stop()
        await asyncio.gather(*running)
    assert outcome["status"] == "completed", outcome["error"]
    same_billing(outcome["step_results"], reference)
    rows = await partition_rows(session_factory)
    assert len(rows) == 12  # 46 customers (cust789 too) in fours
    assert {row.status for row in rows} == {"charged"}
    assert sum(row.customers_seen for row in rows) == customers + 1
    await assert_each_customer_billed_once(session_factory, customers)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ids=st.lists(st.text("ab_0-9", min_size=1, max_size=6), unique=True, max_size=25),
    size=st.integers(1, 8),
)
async def test_partitions_cover_every_customer_once_when_cut_in_any_size(
    session_factory, ids, size
):
    tenant = f"t_{uuid.uuid4().hex[:12]}"
    async with session_factory() as session, session.begin():
        session.add(
            Tenant(
                id=tenant,
                name=tenant,
                domain=tenant,
                plan="basic",
                admin_email="a@b.c",
                status="active",
            )
        )
        await session.flush()
        session.add_all(
            Customer(
                id=f"{tenant}:{cid}",
                tenant_id=tenant,
                name=cid,
                email="c@d.e",
                customer_type="residential",
                profile={},
            )
            for cid in ids
        )
    partitions = BillingPartitions(session_factory)
    count = await partitions.create(tenant, PERIOD, partition_size=size)
    assert count == len(ids) // size + 1
    # Compared in SQL: ranges follow the database's collation, as the cut does.
    part, cust = BillingPartition, Customer
    inside = (cust.id > part.customer_after) & (
        part.customer_last.is_(None) | (cust.id <= part.customer_last)
    )
    async with session_factory() as session:
        per_customer = (
            await session.execute(
                select(cust.id, func.count(part.partition))
                .join(part, inside & (part.tenant_id == tenant))
                .where(cust.tenant_id == tenant)
                .group_by(cust.id)
            )
        ).all()
        per_partition = (
            await session.execute(
                select(part.partition, func.count(cust.id))
                .outerjoin(cust, inside & (cust.tenant_id == tenant))
                .where(part.tenant_id == tenant)
                .group_by(part.partition)
            )
        ).all()
    assert len(per_customer) == len(ids)
    assert all(holders == 1 for _, holders in per_customer)
    assert all(size_of <= size for _, size_of in per_partition)
    # Cutting again (a step re-run after a crash) keeps the ranges it had.
    assert await partitions.create(tenant, PERIOD, partition_size=size + 1) == count


async def test_run_fails_clearly_and_compensates_when_a_partition_failed_in_another_worker(
    session_factory,
):
    await seed_demo_data(session_factory, customers=10)
    partitions = BillingPartitions(session_factory)
    await partitions.create(DEMO_TENANT_ID, PERIOD, partition_size=4)
    async with session_factory() as session, session.begin():
        await session.execute(
            update(BillingPartition)
            .where(BillingPartition.partition == 1)
            .values(status="failed", last_error="RuntimeError: card processor exploded")
        )
    with pytest.raises(BillingRunError, match="partition 1 .* failed: RuntimeError") as caught:
        await partitions.bill_stage(RUN_ID, INVOICING)
    assert caught.value.metadata == {"reason": "partition_failed", "partition": 1}

    outcome = await run_billing(session_factory, DEMO_TENANT_ID, PERIOD, partition_size=4)
    assert outcome["status"] == "compensated"
    assert outcome["failed_step"] == "generate_invoices"
    assert "card processor exploded" in outcome["error"]["message"]
    # Compensation stopped every other partition: no worker invoices the cancelled run.
    assert {row.status for row in await partition_rows(session_factory)} <= {
        "failed",
        "cancelled",
        "invoiced",
    }
    assert await BillingPartitions(session_factory).claim() is None
    live = select(func.count()).where(Invoice.status != "void")
    assert await scalar(session_factory, live) == 0


async def test_claim_is_refused_while_the_lease_holds_and_granted_after_it_passed(
    session_factory,
):
    await seed_demo_data(session_factory, customers=3)
    clock = ManualClock()
    first = BillingPartitions(session_factory, clock=clock, lease_seconds=60, worker_id="a")
    second = BillingPartitions(session_factory, clock=clock, lease_seconds=60, worker_id="b")
    assert await first.create(DEMO_TENANT_ID, PERIOD, partition_size=100) == 1
    held = await first.claim()
    assert held is not None and held.attempts == 1
    assert await second.claim() is None
    clock.advance(seconds=59)
    assert await second.claim() is None
    clock.advance(seconds=2)
    taken = await second.claim()
    assert taken is not None and (taken.partition, taken.attempts) == (0, 2)
    # The first worker's fence now fails: it can write nothing more for the partition.
    async with session_factory() as session:
        with pytest.raises(BillingRunError, match="no longer held by a"):
            await first.fence(held)(session, {"customers_seen": 1})


async def _bill_beside(factory, workers: list[subprocess.Popen[bytes]], logs: list[Path]) -> Any:
    """Run the billing once every worker process has started; stop them after it."""
    try:
        for log in logs:
            deadline = time.monotonic() + 60
            while "started" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.05)
        return await run_billing(factory, DEMO_TENANT_ID, PERIOD, partition_size=5, batch_size=5)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)


async def test_worker_that_lost_its_partition_writes_nothing_when_another_took_it_over(
    session_factory,
):
    await seed_demo_data(session_factory, customers=10)
    clock = ManualClock()
    first = BillingPartitions(session_factory, clock=clock, lease_seconds=60, worker_id="a")
    second = BillingPartitions(session_factory, clock=clock, lease_seconds=60, worker_id="b")
    await first.create(DEMO_TENANT_ID, PERIOD, partition_size=100)
    stale = await first.claim()
    clock.advance(seconds=61)
    current = await second.claim()
    assert stale is not None and current is not None

    assert await first.process(stale) is False  # its first batch's fence failed: rolled back
    assert await scalar(session_factory, select(func.count()).select_from(Invoice)) == 0
    assert await second.process(current) is True
    [row] = await partition_rows(session_factory)
    assert (row.status, row.claimed_by, row.customers_seen, row.invoices_created) == (
        "invoiced",
        "b",
        11,
        10,
    )


# --- real processes ----------------------------------------------------------------------

#: The charge after which the crashing worker's gateway hangs: the charges of its batch
#: went through at the provider, but their payments were never recorded.
HANG_AFTER = 10


class HangingGateway(SandboxPaymentGateway):
    """The sandbox provider, in a worker that hangs (is killed) right after charging."""

    charged = 0

    async def charge_batch(self, requests: Sequence[ChargeRequest]) -> list[Any]:
        outcomes = await super().charge_batch(requests)
        HangingGateway.charged += len(requests)
        if HangingGateway.charged > HANG_AFTER:
            await asyncio.Event().wait()  # killed here, with the batch charged but unrecorded
        return outcomes


def _bill_and_hang(url: str) -> None:
    """A worker process that drives the run, invoices it all and hangs in its 2nd charge batch."""

    async def go() -> None:
        factory = create_session_factory(url, migrate=False)
        coordinator = SagaCoordinator(factory, lease_seconds=60)
        await run_billing(
            factory,
            DEMO_TENANT_ID,
            PERIOD,
            coordinator=coordinator,
            gateway=HangingGateway,
            partition_size=20,
            batch_size=HANG_AFTER,
        )

    asyncio.run(go())


async def _wait_for(condition, what: str, proc=None, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert proc is None or proc.is_alive(), f"the worker process died before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


#: Several worker processes need PostgreSQL (SKIP LOCKED claims); on SQLite, one worker.
ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.mark.reliability
@ON_POSTGRES
async def test_killed_workers_partition_is_taken_over_after_its_lease_and_nobody_is_charged_twice(
    session_factory, database_url, tmp_path
):
    customers = 50
    reference = await reference_outcome(database_url, tmp_path, customers)
    await seed_demo_data(session_factory, customers=customers)
    proc = multiprocessing.get_context("spawn").Process(target=_bill_and_hang, args=(database_url,))
    proc.start()
    try:
        ledger = select(func.count()).select_from(GatewayLedgerEntry)

        async def second_batch_charged() -> bool:
            return await scalar(session_factory, ledger) > HANG_AFTER

        await _wait_for(second_batch_charged, "its second charge batch", proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    in_doubt = select(func.count()).where(Invoice.status == "charging")
    assert await scalar(session_factory, in_doubt) > 0  # charged, never recorded
    [held] = [row for row in await partition_rows(session_factory) if row.claimed_by is not None]
    assert held.status == "charging" and held.lease_until is not None

    # Another worker, on a clock past the dead one's lease: it takes the partition over and
    # charges the in-doubt invoices again with their keys (the provider replays them).
    clock = ManualClock()
    clock.advance(seconds=61)
    taker = BillingPartitionWorker(session_factory, clock=clock, worker_id="taker")
    await taker.run_once()
    rows = await partition_rows(session_factory)
    assert {row.status for row in rows} <= {"charged", "charging", "invoiced"}
    taken = [row for row in rows if row.partition == held.partition][0]
    assert (taken.status, taken.claimed_by, taken.attempts) == ("charged", "taker", 2)

    # The run's saga resumes (its lease passed too) and finishes with the same report.
    coordinator = SagaCoordinator(session_factory, lease_seconds=60, clock=clock)
    outcome = await run_billing(
        session_factory, DEMO_TENANT_ID, PERIOD, coordinator=coordinator, partition_size=20
    )
    assert outcome["status"] == "completed", outcome["error"]
    same_billing(outcome["step_results"], reference)
    await assert_each_customer_billed_once(session_factory, customers)


@pytest.mark.reliability
@ON_POSTGRES
async def test_two_worker_processes_bill_one_run_together_when_started_with_concurrency(
    session_factory, database_url, tmp_path
):
    customers = 300
    reference = await reference_outcome(database_url, tmp_path, customers)
    await seed_demo_data(session_factory, customers=customers)
    command = [
        str(Path(sys.executable).with_name("dotmac-bl")),
        "worker",
        "--database-url",
        database_url,
        "--concurrency",
        "2",
        "--poll-interval",
        "0.02",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    logs = [tmp_path / f"worker{n}.out" for n in range(2)]
    with contextlib.ExitStack() as files:
        outputs = [files.enter_context(log.open("w")) for log in logs]
        workers = [
            subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
            for out in outputs
        ]
        outcome = await _bill_beside(session_factory, workers, logs)
    assert outcome["status"] == "completed", outcome["error"]
    same_billing(outcome["step_results"], reference)
    await assert_each_customer_billed_once(session_factory, customers)
    pids = {str(worker.pid) for worker in workers}
    billers = {row.claimed_by.split(":")[1] for row in await partition_rows(session_factory)}
    assert billers & pids, f"no partition billed by a worker process: {billers}"
    for log in logs:
        assert "billed" in log.read_text(), log.read_text()


def test_billing_worker_is_refused_when_concurrency_is_below_one(tmp_path):
    factory = create_session_factory(sqlite_url(tmp_path), migrate=False)
    with pytest.raises(InvalidInputError, match="concurrency must be at least 1"):
        BillingPartitionWorker(factory, concurrency=0)
