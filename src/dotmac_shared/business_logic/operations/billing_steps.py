"""The work of a billing run, one method per saga step, streamed in batches and resumable.

Every step may run again after a crash (sagas are at-least-once), so each one is written to
be repeatable: invoice ids are derived from (tenant, customer, period) and inserted with
``ON CONFLICT DO NOTHING``; every charge carries the invoice's idempotency key, which the
gateway honours across crashes; notifications carry dedupe keys. Memory stays flat: customers
and invoices are read in keyset-paginated batches, each committed on its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from dotmac_shared.business_logic.exceptions import BillingRunError, InvalidInputError
from dotmac_shared.business_logic.observability.log import get_logger
from dotmac_shared.business_logic.observability.telemetry import BILLING_CUSTOMERS_PROCESSED
from dotmac_shared.business_logic.operations.billing_math import (
    BillingPeriod,
    ServiceCharge,
    draft_invoice,
)
from dotmac_shared.business_logic.operations.catalog import DEFAULT_TAX_RATE
from dotmac_shared.business_logic.operations.ports import (
    BatchPaymentGateway,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    Notification,
    Notifier,
    PaymentGateway,
    TransientGatewayError,
)
from dotmac_shared.business_logic.persistence.models import (
    BillingAccount,
    BillingRun,
    Customer,
    Invoice,
    InvoiceLine,
    OutboxMessage,
    Payment,
    Service,
    Tenant,
    TenantSetting,
)
from dotmac_shared.business_logic.persistence.sql import insert_for, refresh_statistics
from dotmac_shared.business_logic.persistence.types import utcnow

__all__ = ["BillingRunSteps", "billing_run_id", "invoice_id"]

logger = get_logger(__name__)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def billing_run_id(tenant_id: str, period: str) -> str:
    """The id of a tenant's billing run for a period (one per tenant and period)."""
    return "br_" + _digest(tenant_id, period)


def invoice_id(tenant_id: str, customer_id: str, period: str) -> str:
    """The id of a customer's invoice for a period: the same on every retry."""
    return "inv_" + _digest(tenant_id, customer_id, period)


@dataclasses.dataclass
class BillingRunSteps:
    """What each billing-run step does, given its collaborators.

    Args:
        session_factory: The spec's ``db_session_factory``.
        gateway: Charges invoices (default in the saga: the sandbox gateway).
        notifier: Queues invoice and failure notices (default: the outbox).
        batch_size: Customers or invoices per committed batch.
        charge_concurrency: Charges in flight at once within a batch.
        charge_attempts: Attempts per charge when the gateway fails transiently.
        now: The clock (tests pin it).
    """

    session_factory: async_sessionmaker[AsyncSession]
    gateway: PaymentGateway
    notifier: Notifier
    batch_size: int = 500
    charge_concurrency: int = 16
    charge_attempts: int = 3
    now: Callable[[], dt.datetime] = utcnow

    # --- 1. validate period ------------------------------------------------------------

    async def validate_period(self, tenant_id: str, period_text: object) -> dict[str, Any]:
        """Check the period and open (or reopen) the run; refuses a finalized period."""
        period = BillingPeriod.parse(period_text)
        period.ensure_not_future(self.now())
        run_id = billing_run_id(tenant_id, str(period))
        async with self.session_factory() as session, session.begin():
            if await session.get(Tenant, tenant_id) is None:
                raise InvalidInputError(f"unknown tenant {tenant_id!r}", field="tenant_id")
            await session.execute(
                insert_for(session, BillingRun)
                .values(
                    id=run_id, tenant_id=tenant_id, billing_period=str(period), status="running"
                )
                .on_conflict_do_nothing(index_elements=["id"])
            )
            run = await session.get(BillingRun, run_id)
            if run is None:  # pragma: no cover - inserted or present just above
                raise BillingRunError("billing run row missing", billing_run_id=run_id)
            if run.status == "finalized":
                raise BillingRunError(
                    f"billing period {period} of tenant {tenant_id} is already finalized",
                    billing_run_id=run_id,
                    tenant_id=tenant_id,
                )
            run.status = "running"
        return {"billing_run_id": run_id, "tenant_id": tenant_id, "billing_period": str(period)}

    async def cancel_run(self, run_id: str) -> None:
        """Compensation of validate_period: mark an unfinished run cancelled."""
        async with self.session_factory() as session, session.begin():
            await session.execute(
                update(BillingRun)
                .where(BillingRun.id == run_id, BillingRun.status != "finalized")
                .values(status="cancelled")
            )

    # --- 2. generate invoices ----------------------------------------------------------

    async def _tax_rate(self, session: AsyncSession, tenant_id: str) -> Decimal:
        setting = await session.get(TenantSetting, (tenant_id, "tax_rate"))
        return Decimal(str(setting.value)) if setting is not None else DEFAULT_TAX_RATE

    async def generate_invoices(self, tenant_id: str, period_text: str) -> dict[str, Any]:
        """Invoice every customer with a service active in the period, exactly once."""
        period = BillingPeriod.parse(period_text)
        run_id = billing_run_id(tenant_id, period_text)
        async with self.session_factory() as session, session.begin():
            await refresh_statistics(session, "customers", "services")
            tax_rate = await self._tax_rate(session, tenant_id)
        created = customers_seen = 0
        after = ""
        while True:
            async with self.session_factory() as session, session.begin():
                customer_ids = list(
                    (
                        await session.execute(
                            select(Customer.id)
                            .where(Customer.tenant_id == tenant_id, Customer.id > after)
                            .order_by(Customer.id)
                            .limit(self.batch_size)
                        )
                    ).scalars()
                )
                if not customer_ids:
                    break
                after = customer_ids[-1]
                customers_seen += len(customer_ids)
                created += await self._invoice_batch(
                    session, tenant_id, period, run_id, customer_ids, tax_rate
                )
            BILLING_CUSTOMERS_PROCESSED.add(len(customer_ids), {"tenant": tenant_id})
        return {"invoices_created": created, "customers_seen": customers_seen}

    async def _invoice_batch(
        self,
        session: AsyncSession,
        tenant_id: str,
        period: BillingPeriod,
        run_id: str,
        customer_ids: Sequence[str],
        tax_rate: Decimal,
    ) -> int:
        rows = await session.execute(
            select(
                Service.customer_id,
                Service.id,
                Service.service_type,
                Service.monthly_price,
                Service.started_at,
                Service.ended_at,
            )
            .where(Service.tenant_id == tenant_id, Service.customer_id.in_(customer_ids))
            .where(Service.started_at.is_not(None), Service.started_at < period.end)
            .where((Service.ended_at.is_(None)) | (Service.ended_at > period.start))
            .order_by(Service.customer_id, Service.id)
        )
        charges: dict[str, list[ServiceCharge]] = defaultdict(list)
        for customer_id, service_id, service_type, price, started, ended in rows:
            charges[customer_id].append(
                ServiceCharge(service_id, f"{service_type} service", price, started, ended)
            )
        invoices: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []
        for customer_id, services in charges.items():
            draft = draft_invoice(period, services, tax_rate)
            if draft is None:
                continue
            inv = invoice_id(tenant_id, customer_id, str(period))
            invoices.append(
                {
                    "id": inv,
                    "tenant_id": tenant_id,
                    "customer_id": customer_id,
                    "billing_period": str(period),
                    "billing_run_id": run_id,
                    "subtotal": draft.subtotal,
                    "tax": draft.tax,
                    "total": draft.total,
                    "currency": "USD",
                    "status": "open",
                }
            )
            lines.extend(
                {
                    "invoice_id": inv,
                    "service_id": line.service_id,
                    "description": line.description,
                    "days": line.days,
                    "amount": line.amount,
                }
                for line in draft.lines
            )
        if not invoices:
            return 0
        # Lines only for invoices this batch really created: a re-run after a crash skips
        # invoices that exist (the unique (tenant, customer, period) key) and their lines.
        inserted = await session.execute(
            insert_for(session, Invoice)
            .on_conflict_do_nothing(index_elements=["tenant_id", "customer_id", "billing_period"])
            .returning(Invoice.id),
            invoices,
        )
        new_ids = set(inserted.scalars())
        new_lines = [line for line in lines if line["invoice_id"] in new_ids]
        if new_lines:
            await session.execute(insert_for(session, InvoiceLine), new_lines)
        return len(new_ids)

    async def void_open_invoices(self, tenant_id: str, period_text: str) -> int:
        """Compensation of generate_invoices: void the run's invoices not yet charged."""
        run_id = billing_run_id(tenant_id, period_text)
        async with self.session_factory() as session, session.begin():
            result = await session.execute(
                update(Invoice)
                .where(Invoice.billing_run_id == run_id, Invoice.status == "open")
                .values(status="void")
                .returning(Invoice.id)
            )
            return len(result.all())

    # --- 3. process payments -----------------------------------------------------------

    async def _charge_one(self, request: ChargeRequest) -> tuple[ChargeResult | None, str | None]:
        """Charge with retries on transient gateway errors; the key makes retries harmless."""
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TransientGatewayError),
                stop=stop_after_attempt(self.charge_attempts),
                wait=wait_exponential_jitter(multiplier=0.01, max=0.5, jitter=0.05),
                reraise=True,
            ):
                with attempt:
                    result = await self.gateway.charge(
                        idempotency_key=request.idempotency_key,
                        payment_method_token=request.payment_method_token,
                        amount=request.amount,
                        currency=request.currency,
                    )
        except TransientGatewayError as exc:
            return None, f"gateway unavailable after {self.charge_attempts} attempts: {exc}"
        return result, None

    async def _charge_all(
        self, batch: Sequence[dict[str, Any]]
    ) -> list[tuple[ChargeResult | None, str | None]]:
        """Charge a batch: in one submission if the gateway takes batches, else concurrently."""
        outcomes: list[tuple[ChargeResult | None, str | None]] = [
            (None, "no payment method on file") for _ in batch
        ]
        pending = [
            (i, ChargeRequest(f"invoice:{inv['id']}", inv["token"], inv["total"], inv["currency"]))
            for i, inv in enumerate(batch)
            if inv["token"]
        ]
        if isinstance(self.gateway, BatchPaymentGateway):
            first = await self.gateway.charge_batch([request for _, request in pending])
            retry = []
            for (i, request), outcome in zip(pending, first, strict=True):
                if isinstance(outcome, TransientGatewayError):
                    retry.append((i, request))  # the first attempt failed; retry one by one
                else:
                    outcomes[i] = (outcome, None)
            pending = retry
        limiter = asyncio.Semaphore(self.charge_concurrency)

        async def charge(request: ChargeRequest) -> tuple[ChargeResult | None, str | None]:
            async with limiter:
                return await self._charge_one(request)

        results = await asyncio.gather(*(charge(request) for _, request in pending))
        for (i, _), result in zip(pending, results, strict=True):
            outcomes[i] = result
        return outcomes

    async def process_payments(self, tenant_id: str, period_text: str) -> dict[str, Any]:
        """Charge every open invoice of the run once; declines are recorded, not fatal."""
        run_id = billing_run_id(tenant_id, period_text)
        counts = {"paid": 0, "declined": 0, "failed": 0}
        async with self.session_factory() as session, session.begin():
            await refresh_statistics(session, "invoices")  # just bulk-inserted by the last step
        after = ""
        while True:
            async with self.session_factory() as session:
                batch = [
                    dict(row._mapping)
                    for row in await session.execute(
                        select(
                            Invoice.id,
                            Invoice.total,
                            Invoice.currency,
                            BillingAccount.payment_method_token.label("token"),
                        )
                        .outerjoin(
                            BillingAccount, BillingAccount.customer_id == Invoice.customer_id
                        )
                        .where(Invoice.billing_run_id == run_id, Invoice.status == "open")
                        .where(Invoice.id > after)
                        .order_by(Invoice.id)
                        .limit(self.batch_size)
                    )
                ]
            if not batch:
                break
            after = batch[-1]["id"]
            outcomes = await self._charge_all(batch)
            await self._record_payments(tenant_id, batch, outcomes, counts)
        return counts

    async def _record_payments(
        self,
        tenant_id: str,
        batch: Sequence[dict[str, Any]],
        outcomes: Sequence[tuple[ChargeResult | None, str | None]],
        counts: dict[str, int],
    ) -> None:
        payments, statuses = [], {}
        for invoice, (result, error) in zip(batch, outcomes, strict=True):
            if result is not None and result.status is ChargeStatus.SUCCEEDED:
                status, invoice_status = "succeeded", "paid"
                counts["paid"] += 1
            elif result is not None:
                status, invoice_status, error = "declined", "payment_failed", result.message
                counts["declined"] += 1
            else:
                status, invoice_status = "failed", "payment_failed"
                counts["failed"] += 1
            statuses[invoice["id"]] = invoice_status
            payments.append(
                {
                    "id": "pay_" + invoice["id"].removeprefix("inv_"),
                    "invoice_id": invoice["id"],
                    "tenant_id": tenant_id,
                    "status": status,
                    "amount": invoice["total"],
                    "gateway_reference": result.reference if result is not None else None,
                    "error": error,
                }
            )
        async with self.session_factory() as session, session.begin():
            await session.execute(
                insert_for(session, Payment).on_conflict_do_nothing(index_elements=["invoice_id"]),
                payments,
            )
            for new_status in ("paid", "payment_failed"):
                ids = [inv for inv, s in statuses.items() if s == new_status]
                if ids:
                    await session.execute(
                        update(Invoice)
                        .where(Invoice.id.in_(ids), Invoice.status == "open")
                        .values(status=new_status)
                    )

    # --- 4. send notifications ---------------------------------------------------------

    async def send_notifications(self, tenant_id: str, period_text: str) -> dict[str, Any]:
        """Queue an invoice notice per invoice and a failure notice per failed payment."""
        run_id = billing_run_id(tenant_id, period_text)
        queued = 0
        async with self.session_factory() as session, session.begin():
            await refresh_statistics(session, "invoices")  # statuses just changed in bulk
        after = ""
        while True:
            async with self.session_factory() as session, session.begin():
                rows = (
                    await session.execute(
                        select(Invoice.id, Invoice.status, Invoice.total, Customer.email)
                        .join(Customer, Customer.id == Invoice.customer_id)
                        .where(Invoice.billing_run_id == run_id, Invoice.id > after)
                        .where(Invoice.status.in_(("paid", "payment_failed")))
                        .order_by(Invoice.id)
                        .limit(self.batch_size)
                    )
                ).all()
                if not rows:
                    break
                after = rows[-1].id
                notices = []
                for inv, status, total, email in rows:
                    payload = {"invoice_id": inv, "total": str(total), "period": period_text}
                    notices.append(
                        Notification(tenant_id, email, "invoice_issued", payload, f"{inv}:issued")
                    )
                    if status == "payment_failed":
                        notices.append(
                            Notification(
                                tenant_id, email, "payment_failed", payload, f"{inv}:payment_failed"
                            )
                        )
                queued += await self.notifier.notify_many(session, notices)
        return {"notifications_queued": queued}

    # --- 5. finalize -------------------------------------------------------------------

    async def finalize(self, tenant_id: str, period_text: str) -> dict[str, Any]:
        """Close the run with a report: counts, totals and the customers whose payment failed."""
        run_id = billing_run_id(tenant_id, period_text)
        async with self.session_factory() as session, session.begin():
            totals = (
                await session.execute(
                    select(
                        func.count(Invoice.id),
                        func.coalesce(func.sum(case((Invoice.status == "paid", 1), else_=0)), 0),
                        func.coalesce(
                            func.sum(case((Invoice.status == "payment_failed", 1), else_=0)), 0
                        ),
                    ).where(Invoice.billing_run_id == run_id)
                )
            ).one()
            amounts = await self._sum_by_status(session, run_id)
            failed_customers = list(
                (
                    await session.execute(
                        select(Invoice.customer_id)
                        .where(Invoice.billing_run_id == run_id)
                        .where(Invoice.status == "payment_failed")
                        .order_by(Invoice.customer_id)
                    )
                ).scalars()
            )
            queued = (
                await session.execute(
                    select(func.count(OutboxMessage.id)).where(
                        OutboxMessage.tenant_id == tenant_id,
                        OutboxMessage.payload["period"].as_string() == period_text,
                    )
                )
            ).scalar_one()
            report = {
                "billing_run_id": run_id,
                "tenant_id": tenant_id,
                "billing_period": period_text,
                "invoices": int(totals[0]),
                "paid": int(totals[1]),
                "payment_failed": int(totals[2]),
                "total_invoiced": str(amounts["all"]),
                "total_collected": str(amounts["paid"]),
                "total_outstanding": str(amounts["payment_failed"]),
                "failed_customers": failed_customers,
                "notifications": int(queued),
            }
            await session.execute(
                update(BillingRun)
                .where(BillingRun.id == run_id)
                .values(status="finalized", report=report, finalized_at=self.now())
            )
        logger.info("billing run %s finalized: %s invoices", run_id, report["invoices"])
        return report

    async def _sum_by_status(self, session: AsyncSession, run_id: str) -> dict[str, Decimal]:
        # Summed in Python: SQLite stores Money as exact text, and SUM would go through floats.
        sums = {"all": Decimal("0.00"), "paid": Decimal("0.00"), "payment_failed": Decimal("0.00")}
        after = ""
        while True:
            rows = (
                await session.execute(
                    select(Invoice.id, Invoice.status, Invoice.total)
                    .where(Invoice.billing_run_id == run_id, Invoice.id > after)
                    .order_by(Invoice.id)
                    .limit(5_000)
                )
            ).all()
            if not rows:
                return sums
            after = rows[-1].id
            for _, status, total in rows:
                sums["all"] += total
                if status in sums:
                    sums[status] += total
