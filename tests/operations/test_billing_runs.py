"""Billing runs started without waiting, their progress and report, and a customer's record."""

from __future__ import annotations

import asyncio
import json

import pytest

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.exceptions import BillingRunError, InvalidInputError
from dotmac_shared.business_logic.operations import (
    billing_run_progress,
    customer_record,
    seed_demo_data,
    shipped_coordinator,
    start_billing_run,
)
from dotmac_shared.business_logic.operations._billing_math import BillingPeriod
from dotmac_shared.business_logic.operations._billing_steps import billing_run_id
from dotmac_shared.business_logic.operations._seed import DEMO_CUSTOMER_ID, DEMO_TENANT_ID
from dotmac_shared.business_logic.sagas import SagaCoordinator


def last_month(clock: ManualClock) -> str:
    """The period before the clock's month: billable, and never a fixed calendar date."""
    now = clock.now()
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return str(BillingPeriod.parse(f"{year:04d}-{month:02d}"))


async def test_start_returns_a_durable_id_before_the_run_ends_when_started(session_factory):
    clock = ManualClock()
    await seed_demo_data(session_factory, customers=20)
    period = last_month(clock)
    started = await start_billing_run(session_factory, DEMO_TENANT_ID, period, clock=clock)
    assert started.billing_run_id == billing_run_id(DEMO_TENANT_ID, period)
    assert started.to_dict() == {
        "billing_run_id": started.billing_run_id,
        "tenant_id": DEMO_TENANT_ID,
        "billing_period": period,
        "attempt": 1,
    }
    # The saga row is committed already: another reader sees it while the run goes on.
    saga = await SagaCoordinator(session_factory).get_saga(
        started.billing_run_id, tenant_id=DEMO_TENANT_ID
    )
    assert saga["saga_name"] == "billing_run"
    outcome = await started.task
    assert outcome["status"] == "completed", outcome["error"]
    progress = await billing_run_progress(session_factory, DEMO_TENANT_ID, started.billing_run_id)
    assert progress.finished and progress.status == "completed"
    assert progress.run_status == "finalized"
    assert progress.steps_completed == progress.steps_total == 5
    assert progress.report is not None and progress.report["invoices"] == 20
    assert progress.partitions == {"charged": 1}  # 20 customers fit one partition
    as_json = json.loads(json.dumps(progress.to_dict()))
    assert as_json["report"]["invoices"] == 20 and as_json["billing_period"] == period
    assert as_json["partitions"] == {"charged": 1}


async def test_start_returns_the_same_attempt_when_the_period_already_ran(session_factory):
    clock = ManualClock()
    await seed_demo_data(session_factory, customers=3)
    period = last_month(clock)
    first = await start_billing_run(session_factory, DEMO_TENANT_ID, period, clock=clock)
    await first.task
    again = await start_billing_run(session_factory, DEMO_TENANT_ID, period, clock=clock)
    assert again.billing_run_id == first.billing_run_id and again.attempt == 1
    assert (await again.task)["status"] == "completed"


@pytest.mark.parametrize("period", ["2026-13", "soon"])
async def test_start_refuses_a_malformed_period_when_asked(session_factory, period):
    await seed_demo_data(session_factory)
    with pytest.raises(InvalidInputError) as caught:
        await start_billing_run(session_factory, DEMO_TENANT_ID, period)
    assert caught.value.field == "billing_period"


async def test_start_refuses_a_future_period_when_asked(session_factory):
    clock = ManualClock()
    await seed_demo_data(session_factory)
    now = clock.now()
    future = f"{now.year + 1:04d}-{now.month:02d}"
    with pytest.raises(InvalidInputError, match="future"):
        await start_billing_run(session_factory, DEMO_TENANT_ID, future, clock=clock)


async def test_start_refuses_an_unknown_tenant_when_asked(session_factory):
    clock = ManualClock()
    await seed_demo_data(session_factory)
    with pytest.raises(InvalidInputError) as caught:
        await start_billing_run(session_factory, "ghost", last_month(clock), clock=clock)
    assert caught.value.field == "tenant_id"


async def test_start_refuses_a_retry_when_nothing_ran(session_factory):
    clock = ManualClock()
    await seed_demo_data(session_factory)
    with pytest.raises(BillingRunError) as caught:
        await start_billing_run(
            session_factory, DEMO_TENANT_ID, last_month(clock), retry=True, clock=clock
        )
    assert caught.value.metadata["reason"] == "not_started"


async def test_progress_is_not_found_when_the_run_is_another_tenants(session_factory):
    clock = ManualClock()
    await seed_demo_data(session_factory, customers=2)
    started = await start_billing_run(
        session_factory, DEMO_TENANT_ID, last_month(clock), clock=clock
    )
    await started.task
    for tenant, run_id in (("other", started.billing_run_id), (DEMO_TENANT_ID, "br_nothing")):
        with pytest.raises(BillingRunError) as caught:
            await billing_run_progress(session_factory, tenant, run_id)
        assert caught.value.metadata["reason"] == "not_found"


async def test_a_worker_finishes_the_run_when_the_starting_task_died(session_factory):
    clock = ManualClock()
    await seed_demo_data(session_factory, customers=10)
    started = await start_billing_run(
        session_factory, DEMO_TENANT_ID, last_month(clock), lease_seconds=5, clock=clock
    )
    started.task.cancel()  # the process that started it goes away mid-run
    with pytest.raises(asyncio.CancelledError):
        await started.task
    progress = await billing_run_progress(session_factory, DEMO_TENANT_ID, started.billing_run_id)
    assert not progress.finished
    clock.advance(seconds=6)  # the dead starter's lease runs out
    assert await shipped_coordinator(session_factory, clock=clock).recover() == 1
    progress = await billing_run_progress(session_factory, DEMO_TENANT_ID, started.billing_run_id)
    assert progress.status == "completed" and progress.report is not None
    assert progress.report["invoices"] == 10


async def test_customer_record_is_typed_and_json_safe_when_the_customer_exists(session_factory):
    await seed_demo_data(session_factory)
    record = await customer_record(session_factory, DEMO_TENANT_ID, DEMO_CUSTOMER_ID)
    assert record.customer_id == DEMO_CUSTOMER_ID and record.tenant_id == DEMO_TENANT_ID
    data = json.loads(json.dumps(record.to_dict()))
    assert data["customer_id"] == DEMO_CUSTOMER_ID
    assert data["profile"] == dict(record.profile)
    assert isinstance(data["created_at"], str)
    assert all(isinstance(s["monthly_price"], str) for s in data["services"])


async def test_customer_record_is_not_found_when_the_customer_is_another_tenants(
    session_factory,
):
    await seed_demo_data(session_factory)
    for tenant, customer in (("other", DEMO_CUSTOMER_ID), (DEMO_TENANT_ID, "ghost")):
        with pytest.raises(InvalidInputError) as caught:
            await customer_record(session_factory, tenant, customer)
        assert caught.value.field == "customer_id"
        assert caught.value.metadata["reason"] == "not_found"


async def test_start_raises_when_the_saga_cannot_be_written(session_factory, monkeypatch):
    from dotmac_shared.business_logic.exceptions import PersistenceError
    from dotmac_shared.business_logic.sagas import SqlSagaStore

    async def broken(self, *args, **kwargs):
        raise PersistenceError("the database went away")

    clock = ManualClock()
    await seed_demo_data(session_factory)
    monkeypatch.setattr(SqlSagaStore, "create", broken)
    with pytest.raises(PersistenceError):
        await start_billing_run(session_factory, DEMO_TENANT_ID, last_month(clock), clock=clock)


async def test_start_returns_the_running_attempt_when_another_worker_holds_its_lease(
    session_factory,
):
    from dotmac_shared.business_logic.exceptions import SagaError

    clock = ManualClock()
    await seed_demo_data(session_factory, customers=3)
    period = last_month(clock)
    first = await start_billing_run(
        session_factory, DEMO_TENANT_ID, period, lease_seconds=5, clock=clock
    )
    first.task.cancel()  # its worker stops mid-run; its lease has not expired yet
    with pytest.raises(asyncio.CancelledError):
        await first.task
    again = await start_billing_run(session_factory, DEMO_TENANT_ID, period, clock=clock)
    assert again.billing_run_id == first.billing_run_id and again.attempt == 1
    with pytest.raises(SagaError) as caught:
        await again.task  # nothing runs twice: the lease holder's run is the only one
    assert caught.value.code == "saga_error"
    clock.advance(seconds=6)  # the lease runs out: a new start takes the run over
    resumed = await start_billing_run(session_factory, DEMO_TENANT_ID, period, clock=clock)
    assert resumed.billing_run_id == first.billing_run_id
    assert (await resumed.task)["status"] == "completed"
