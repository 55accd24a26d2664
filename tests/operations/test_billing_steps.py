from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from dotmac_shared.business_logic import BillingRunError, InvalidInputError
from dotmac_shared.business_logic.operations._adapters import OutboxNotifier, SandboxPaymentGateway
from dotmac_shared.business_logic.operations._billing_steps import (
    BillingRunSteps,
    billing_run_id,
    invoice_id,
)
from dotmac_shared.business_logic.operations._seed import DEMO_TENANT_ID, demo_token, seed_demo_data
from dotmac_shared.business_logic.operations.models import (
    BillingRun,
    GatewayLedgerEntry,
    Invoice,
    InvoiceLine,
    OutboxMessage,
    Payment,
)
from tests.operations.gateways import LinkGateway

NOW = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
PERIOD = "2026-10"


def steps_for(factory, **kwargs) -> BillingRunSteps:
    return BillingRunSteps(
        factory,
        SandboxPaymentGateway(factory),
        OutboxNotifier(),
        now=lambda: NOW,
        batch_size=kwargs.pop("batch_size", 7),
        **kwargs,
    )


async def count(factory, model, *where) -> int:
    async with factory() as session:
        stmt = select(func.count()).select_from(model)
        for clause in where:
            stmt = stmt.where(clause)
        return (await session.execute(stmt)).scalar_one()


def expected_total(customers: int) -> Decimal:
    """Hand-computed: full month 49.99 + 8.75% tax = 54.36; mid-October start (every
    10th seeded customer, from the 16th) = 25.80 + 2.26 tax = 28.06; cust789 has no service."""
    prorated = len([i for i in range(customers) if i % 10 == 0])
    return Decimal("54.36") * (customers - prorated) + Decimal("28.06") * prorated


async def run_all(steps: BillingRunSteps) -> dict:
    await steps.validate_period(DEMO_TENANT_ID, PERIOD)
    await steps.generate_invoices(DEMO_TENANT_ID, PERIOD)
    await steps.process_payments(DEMO_TENANT_ID, PERIOD)
    await steps.send_notifications(DEMO_TENANT_ID, PERIOD)
    return await steps.finalize(DEMO_TENANT_ID, PERIOD)


async def test_full_run_invoices_everyone_once_and_reports_totals(session_factory):
    await seed_demo_data(session_factory, customers=60)
    report = await run_all(steps_for(session_factory))
    declined = [f"cust_{i:06d}" for i in range(60) if demo_token(i) == "tok_declined"]
    assert report["invoices"] == 60
    assert Decimal(report["total_invoiced"]) == expected_total(60)
    assert report["payment_failed"] == len(declined) == 1
    assert report["failed_customers"] == declined
    assert report["paid"] == 59
    assert Decimal(report["total_collected"]) + Decimal(report["total_outstanding"]) == Decimal(
        report["total_invoiced"]
    )
    assert report["notifications"] == 60 + 1  # an invoice notice each, a failure notice
    assert await count(session_factory, InvoiceLine) == 60
    assert await count(session_factory, GatewayLedgerEntry) == 60
    async with session_factory() as session:
        run = await session.get(BillingRun, billing_run_id(DEMO_TENANT_ID, PERIOD))
    assert run is not None and run.status == "finalized" and run.report == report


async def test_every_step_is_repeatable_without_double_effects(session_factory):
    await seed_demo_data(session_factory, customers=25)
    steps = steps_for(session_factory)
    await steps.validate_period(DEMO_TENANT_ID, PERIOD)
    first = await steps.generate_invoices(DEMO_TENANT_ID, PERIOD)
    again = await steps.generate_invoices(DEMO_TENANT_ID, PERIOD)
    assert (first["invoices_created"], again["invoices_created"]) == (25, 0)
    await steps.process_payments(DEMO_TENANT_ID, PERIOD)
    assert await steps.process_payments(DEMO_TENANT_ID, PERIOD) == {
        "paid": 0,
        "declined": 0,
        "failed": 0,
    }
    await steps.send_notifications(DEMO_TENANT_ID, PERIOD)
    assert await steps.send_notifications(DEMO_TENANT_ID, PERIOD) == {"notifications_queued": 0}
    assert await count(session_factory, Invoice) == 25
    assert await count(session_factory, Payment) == 25
    assert await count(session_factory, GatewayLedgerEntry) == 25


async def test_charge_recorded_late_after_a_crash_is_not_charged_twice(session_factory):
    await seed_demo_data(session_factory, customers=5)
    steps = steps_for(session_factory)
    await steps.validate_period(DEMO_TENANT_ID, PERIOD)
    await steps.generate_invoices(DEMO_TENANT_ID, PERIOD)
    # A worker charged one invoice, then died before recording the payment.
    async with session_factory() as session:
        invoice = (await session.execute(select(Invoice).limit(1))).scalar_one()
    await SandboxPaymentGateway(session_factory).charge(
        idempotency_key=f"invoice:{invoice.id}",
        payment_method_token="tok_success",
        amount=invoice.total,
        currency="USD",
    )
    counts = await steps.process_payments(DEMO_TENANT_ID, PERIOD)
    assert counts["paid"] == 5
    assert await count(session_factory, GatewayLedgerEntry) == 5


async def test_transient_gateway_failures_are_retried(session_factory):
    await seed_demo_data(session_factory, customers=100)  # customer 96 fails transiently once
    report = await run_all(steps_for(session_factory, batch_size=50))
    assert report["paid"] == 98 and report["payment_failed"] == 2


async def test_finalized_period_is_refused(session_factory):
    await seed_demo_data(session_factory, customers=3)
    steps = steps_for(session_factory)
    await run_all(steps)
    with pytest.raises(BillingRunError, match="already finalized"):
        await steps.validate_period(DEMO_TENANT_ID, PERIOD)


@pytest.mark.parametrize(
    ("tenant", "period", "field"),
    [
        (DEMO_TENANT_ID, "2026-12", "billing_period"),
        (DEMO_TENANT_ID, "Oct", "billing_period"),
        ("nobody", PERIOD, "tenant_id"),
    ],
)
async def test_bad_period_or_tenant_is_refused_and_nothing_is_written(
    session_factory, tenant, period, field
):
    await seed_demo_data(session_factory)
    with pytest.raises(InvalidInputError) as info:
        await steps_for(session_factory).validate_period(tenant, period)
    assert info.value.field == field
    assert await count(session_factory, BillingRun) == 0


async def test_compensation_voids_uncharged_invoices_and_cancels_the_run(session_factory):
    await seed_demo_data(session_factory, customers=4)
    steps = steps_for(session_factory)
    run = await steps.validate_period(DEMO_TENANT_ID, PERIOD)
    await steps.generate_invoices(DEMO_TENANT_ID, PERIOD)
    assert await steps.void_open_invoices(DEMO_TENANT_ID, PERIOD) == 4
    await steps.cancel_run(run["billing_run_id"])
    assert await count(session_factory, Invoice, Invoice.status == "void") == 4
    async with session_factory() as session:
        stored = await session.get(BillingRun, run["billing_run_id"])
    assert stored is not None and stored.status == "cancelled"
    assert await count(session_factory, OutboxMessage) == 0


class SingleChargeGateway:
    """A user's gateway with no batch API: only ``charge``."""

    def __init__(self, inner: SandboxPaymentGateway) -> None:
        self.inner = inner
        self.calls = 0

    async def charge(self, **kwargs):
        self.calls += 1
        return await self.inner.charge(**kwargs)


async def test_gateway_without_batch_api_is_charged_one_by_one_with_retries(session_factory):
    await seed_demo_data(session_factory, customers=100)
    gateway = SingleChargeGateway(SandboxPaymentGateway(session_factory))
    steps = BillingRunSteps(session_factory, gateway, OutboxNotifier(), now=lambda: NOW)
    report = await run_all(steps)
    assert report["paid"] == 98 and report["payment_failed"] == 2
    assert gateway.calls == 101  # 100 invoices, one transient failure retried once
    assert await count(session_factory, GatewayLedgerEntry) == 100


async def test_compensation_leaves_a_submitted_charge_live_when_its_reply_was_lost(
    session_factory,
):
    await seed_demo_data(session_factory, customers=8)
    # The second charge reaches the provider, its reply is lost, and the link stays down.
    link = LinkGateway(SandboxPaymentGateway(session_factory), lose_reply_after=1)
    steps = BillingRunSteps(
        session_factory, link, OutboxNotifier(), now=lambda: NOW, batch_size=4, charge_concurrency=1
    )
    await steps.validate_period(DEMO_TENANT_ID, PERIOD)
    await steps.generate_invoices(DEMO_TENANT_ID, PERIOD)
    with pytest.raises(ConnectionResetError):
        await steps.process_payments(DEMO_TENANT_ID, PERIOD)

    voided = await steps.void_open_invoices(DEMO_TENANT_ID, PERIOD)

    assert voided == 4  # the batch never submitted
    assert await count(session_factory, Invoice, Invoice.status == "paid") == 1  # recorded
    assert await count(session_factory, Invoice, Invoice.status == "charging") == 3  # in doubt
    async with session_factory() as session:
        charged = set((await session.execute(select(GatewayLedgerEntry.idempotency_key))).scalars())
        void = set(
            (await session.execute(select(Invoice.id).where(Invoice.status == "void"))).scalars()
        )
    assert len(charged) == 2 and not {f"invoice:{inv}" for inv in void} & charged


def test_billing_run_id_keeps_attempt_1_and_numbers_later_attempts_when_given_one():
    first = billing_run_id(DEMO_TENANT_ID, PERIOD)
    assert first == billing_run_id(DEMO_TENANT_ID, PERIOD, 1)
    assert first.startswith("br_") and ":" not in first
    assert billing_run_id(DEMO_TENANT_ID, PERIOD, 3) == f"{first}:a3"
    assert invoice_id(DEMO_TENANT_ID, "c1", PERIOD) == invoice_id(DEMO_TENANT_ID, "c1", PERIOD, 1)
    assert invoice_id(DEMO_TENANT_ID, "c1", PERIOD, 2) != invoice_id(DEMO_TENANT_ID, "c1", PERIOD)


@pytest.mark.parametrize("attempt", [0, -1, True, 1.0, "2"])
def test_billing_run_id_is_refused_when_attempt_not_a_whole_number_from_1(attempt):
    with pytest.raises(InvalidInputError) as info:
        billing_run_id(DEMO_TENANT_ID, PERIOD, attempt)
    assert info.value.field == "attempt"


async def test_later_attempt_is_refused_when_the_period_is_finalized(session_factory):
    await seed_demo_data(session_factory, customers=3)
    steps = steps_for(session_factory)
    await run_all(steps)
    with pytest.raises(BillingRunError, match="already finalized"):
        await steps.validate_period(DEMO_TENANT_ID, PERIOD, attempt=2)
    assert await count(session_factory, BillingRun) == 1
