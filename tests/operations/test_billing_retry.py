"""Billing attempts: a compensated run of a period is retried, and nobody is charged twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from dotmac_shared.business_logic.exceptions import BillingRunError
from dotmac_shared.business_logic.operations import run_billing, seed_demo_data
from dotmac_shared.business_logic.operations._adapters import SandboxPaymentGateway
from dotmac_shared.business_logic.operations._billing_run import billing_attempts
from dotmac_shared.business_logic.operations._billing_steps import billing_run_id
from dotmac_shared.business_logic.operations._seed import DEMO_TENANT_ID
from dotmac_shared.business_logic.operations.models import (
    BillingRun,
    GatewayLedgerEntry,
    Invoice,
    Payment,
)
from dotmac_shared.business_logic.sagas import SagaCoordinator
from tests.operations.gateways import LinkGateway

PERIOD = "2026-10"
CUSTOMERS = 12  # seeded billable customers; none of the first 12 has a declining token
BATCH = 5


def options(link: LinkGateway) -> dict[str, Any]:
    """Charge through ``link``, one charge at a time, in batches of five invoices."""
    return {"gateway": lambda _factory: link, "batch_size": BATCH, "charge_concurrency": 1}


async def statuses_by_run(factory) -> dict[str, dict[str, int]]:
    async with factory() as session:
        rows = await session.execute(
            select(Invoice.billing_run_id, Invoice.status, func.count()).group_by(
                Invoice.billing_run_id, Invoice.status
            )
        )
        found: dict[str, dict[str, int]] = {}
        for run_id, status, count in rows:
            found.setdefault(run_id, {})[status] = count
        return found


async def charges_per_customer(factory) -> Counter[str]:
    """The provider's own ledger, by customer: the charge key is ``invoice:<invoice id>``."""
    async with factory() as session:
        keys = list((await session.execute(select(GatewayLedgerEntry.idempotency_key))).scalars())
        owners = {
            invoice: customer
            for invoice, customer in await session.execute(select(Invoice.id, Invoice.customer_id))
        }
    return Counter(owners[key.removeprefix("invoice:")] for key in keys)


async def assert_charged_once_each(factory, customers: int) -> None:
    per_customer = await charges_per_customer(factory)
    assert len(per_customer) == customers
    assert set(per_customer.values()) == {1}, per_customer
    async with factory() as session:
        charged = (await session.execute(select(func.count(GatewayLedgerEntry.amount)))).scalar()
        amounts = list((await session.execute(select(GatewayLedgerEntry.amount))).scalars())
        paid = list(
            (await session.execute(select(Invoice.total).where(Invoice.status == "paid"))).scalars()
        )
        voided_payments = (
            await session.execute(
                select(func.count())
                .select_from(Payment)
                .join(Invoice, Invoice.id == Payment.invoice_id)
                .where(Invoice.status == "void")
            )
        ).scalar_one()
    assert charged == customers
    assert sum(amounts, Decimal(0)) == sum(paid, Decimal(0))  # money taken = invoices paid
    assert voided_payments == 0


async def test_compensated_run_completes_when_retried_after_the_gateway_is_back(session_factory):
    await seed_demo_data(session_factory, customers=CUSTOMERS)
    link = LinkGateway(SandboxPaymentGateway(session_factory), down=True)
    first = await run_billing(session_factory, DEMO_TENANT_ID, PERIOD, **options(link))
    assert first["status"] == "compensated", first
    assert first["failed_step"] == "process_payments"
    assert first["error"]["context"]["exception_type"] == "ConnectionRefusedError"
    assert link.made == 0
    replay = await run_billing(session_factory, DEMO_TENANT_ID, PERIOD, **options(link))
    assert replay == first  # without retry, the compensated attempt is replayed

    link.down = False
    second = await run_billing(session_factory, DEMO_TENANT_ID, PERIOD, retry=True, **options(link))

    assert second["status"] == "completed", second["error"]
    attempt_1, attempt_2 = billing_run_id(DEMO_TENANT_ID, PERIOD, 1), second["saga_id"]
    assert attempt_2 == billing_run_id(DEMO_TENANT_ID, PERIOD, 2) == f"{attempt_1}:a2"
    report = second["step_results"]["finalize"]
    assert report["attempt"] == 2 and report["billing_run_id"] == attempt_2
    assert report["invoices"] == report["paid"] == CUSTOMERS
    # The first batch was submitted when the link was down: in doubt, so carried over and
    # charged with its own keys; the never-submitted rest was voided and invoiced anew.
    assert second["step_results"]["generate_invoices"] == {
        "invoices_created": CUSTOMERS - BATCH,
        "customers_seen": CUSTOMERS + 1,  # cust789 has no service
        "invoices_carried_over": BATCH,
    }
    assert await statuses_by_run(session_factory) == {
        attempt_1: {"void": CUSTOMERS - BATCH},
        attempt_2: {"paid": CUSTOMERS},
    }
    await assert_charged_once_each(session_factory, CUSTOMERS)
    async with session_factory() as session:
        runs = (await session.execute(select(BillingRun).order_by(BillingRun.attempt))).scalars()
        assert [(r.id, r.attempt, r.status) for r in runs] == [
            (attempt_1, 1, "cancelled"),
            (attempt_2, 2, "finalized"),
        ]
    again = await run_billing(session_factory, DEMO_TENANT_ID, PERIOD)
    assert again == second  # the latest attempt is the period's run now


async def test_charge_in_doubt_is_finished_with_its_own_key_when_retried(session_factory):
    await seed_demo_data(session_factory, customers=CUSTOMERS)
    # Two charges go through, the third goes through but its reply is lost, then the link
    # stays down: the rest of that batch is refused, the later batches are never submitted.
    link = LinkGateway(SandboxPaymentGateway(session_factory), lose_reply_after=2)
    first = await run_billing(session_factory, DEMO_TENANT_ID, PERIOD, **options(link))
    assert (
        first["status"] == "compensated"
        and first["error"]["context"]["exception_type"] == "ConnectionResetError"
    )
    attempt_1 = billing_run_id(DEMO_TENANT_ID, PERIOD)
    assert await statuses_by_run(session_factory) == {
        attempt_1: {"paid": 2, "charging": BATCH - 2, "void": CUSTOMERS - BATCH}
    }
    assert link.made == 3

    link.down, link.lose_reply_after = False, None
    second = await run_billing(session_factory, DEMO_TENANT_ID, PERIOD, retry=True, **options(link))

    assert second["status"] == "completed", second["error"]
    report = second["step_results"]["finalize"]
    assert report["invoices"] == report["paid"] == CUSTOMERS
    assert await statuses_by_run(session_factory) == {
        attempt_1: {"void": CUSTOMERS - BATCH},
        second["saga_id"]: {"paid": CUSTOMERS},
    }
    # The charge whose reply was lost was replayed by the provider, not made again.
    assert link.made == 3 + (BATCH - 2) + (CUSTOMERS - BATCH)
    await assert_charged_once_each(session_factory, CUSTOMERS)


async def test_retry_starts_attempt_2_when_attempt_1_refused_an_unknown_tenant(session_factory):
    first = await run_billing(session_factory, DEMO_TENANT_ID, PERIOD)
    assert first["status"] == "compensated" and "unknown tenant" in first["error"]["message"]
    await seed_demo_data(session_factory, customers=3)

    second = await run_billing(session_factory, DEMO_TENANT_ID, PERIOD, retry=True)

    assert second["status"] == "completed", second["error"]
    assert second["step_results"]["finalize"]["invoices"] == 3
    coordinator = SagaCoordinator(session_factory)
    attempts = await billing_attempts(coordinator, DEMO_TENANT_ID, PERIOD)
    assert [(a.number, a.status) for a in attempts] == [(1, "compensated"), (2, "completed")]


async def test_retry_is_refused_when_the_latest_attempt_completed(session_factory):
    await seed_demo_data(session_factory, customers=3)
    done = await run_billing(session_factory, DEMO_TENANT_ID, PERIOD)
    assert done["status"] == "completed"

    with pytest.raises(BillingRunError, match="attempt 1 .* is completed") as info:
        await run_billing(session_factory, DEMO_TENANT_ID, PERIOD, retry=True)

    assert info.value.metadata["reason"] == "latest_attempt_completed"
    attempts = await billing_attempts(SagaCoordinator(session_factory), DEMO_TENANT_ID, PERIOD)
    assert len(attempts) == 1
    assert await run_billing(session_factory, DEMO_TENANT_ID, PERIOD) == done


async def test_retry_is_refused_when_the_latest_attempt_is_still_running(session_factory):
    await seed_demo_data(session_factory, customers=3)
    link = LinkGateway(SandboxPaymentGateway(session_factory))
    link.hold = asyncio.Event()
    running = asyncio.create_task(
        run_billing(session_factory, DEMO_TENANT_ID, PERIOD, **options(link))
    )
    try:
        await asyncio.wait_for(link.holding.wait(), 30)  # attempt 1 is charging

        with pytest.raises(BillingRunError, match="still running") as info:
            await run_billing(session_factory, DEMO_TENANT_ID, PERIOD, retry=True)

        assert info.value.metadata["reason"] == "latest_attempt_running"
    finally:
        link.hold.set()
        outcome = await asyncio.wait_for(running, 30)
    assert outcome["status"] == "completed"
    attempts = await billing_attempts(SagaCoordinator(session_factory), DEMO_TENANT_ID, PERIOD)
    assert [a.number for a in attempts] == [1]


async def test_retry_is_refused_when_the_period_was_never_billed(session_factory):
    await seed_demo_data(session_factory, customers=3)
    with pytest.raises(BillingRunError, match="never run") as info:
        await run_billing(session_factory, DEMO_TENANT_ID, PERIOD, retry=True)
    assert info.value.metadata["reason"] == "not_started"
    assert await billing_attempts(SagaCoordinator(session_factory), DEMO_TENANT_ID, PERIOD) == []


async def test_second_live_invoice_of_a_customer_and_period_is_refused_when_inserted(
    session_factory,
):
    await seed_demo_data(session_factory, customers=3)
    outcome = await run_billing(session_factory, DEMO_TENANT_ID, PERIOD)
    assert outcome["status"] == "completed", outcome["error"]
    async with session_factory() as session:
        live = (await session.execute(select(Invoice).limit(1))).scalar_one()

    def copy(invoice_id: str, status: str) -> Invoice:
        return Invoice(
            id=invoice_id,
            tenant_id=live.tenant_id,
            customer_id=live.customer_id,
            billing_period=live.billing_period,
            subtotal=live.subtotal,
            tax=live.tax,
            total=live.total,
            status=status,
        )

    with pytest.raises(IntegrityError):
        async with session_factory() as session, session.begin():
            session.add(copy("inv_duplicate", "open"))
    # A void invoice of the same customer and period stays beside the live one (history).
    async with session_factory() as session, session.begin():
        session.add(copy("inv_void", "void"))
