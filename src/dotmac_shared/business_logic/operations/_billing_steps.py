"""The work of a billing run, one method per saga step, streamed in batches and resumable.

Every step may run again after a crash (sagas are at-least-once), so each one is written to
be repeatable: invoice ids are derived from (tenant, customer, period, attempt) and inserted
with ``ON CONFLICT DO NOTHING``; every charge carries the invoice's idempotency key, which the
gateway honours across crashes; notifications carry dedupe keys. Memory stays flat: customers
and invoices are read in keyset-paginated batches, each committed on its own.

A period is billed in numbered attempts: attempt n+1 starts only after attempt n was
compensated (see :func:`~dotmac_shared.business_logic.operations._billing_run.run_billing`).

The invariant that keeps a customer from being charged twice across attempts: **an invoice's
charge key is its own id, and an invoice is either voided or submitted for charging, never
both.** An invoice is ``open`` until its batch is marked ``charging`` (committed before the
gateway sees it); compensation voids only ``open`` invoices, in a statement that races the
``open`` → ``charging`` update row by row, so a voided invoice was never submitted. Invoices a
compensated attempt leaves ``charging`` (in doubt: the charge may have gone through), ``paid``
or ``payment_failed`` stay live and are carried over to the next attempt, which finishes an
in-doubt charge with the same key (the gateway replays it if it went through) and never
charges a settled one again. Only a customer whose earlier invoices are all void gets a new
invoice, and with it a new key: reusing a voided invoice's key would replay whatever the
gateway answered for it before, for a charge that was given up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from dotmac_shared.business_logic.exceptions import BillingRunError, InvalidInputError
from dotmac_shared.business_logic.observability._log import get_logger
from dotmac_shared.business_logic.observability._telemetry import BILLING_CUSTOMERS_PROCESSED
from dotmac_shared.business_logic.operations._billing_math import (
    BillingPeriod,
    ServiceCharge,
    draft_invoice,
)
from dotmac_shared.business_logic.operations._catalog import DEFAULT_TAX_RATE
from dotmac_shared.business_logic.operations._ports import (
    BatchPaymentGateway,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    Notification,
    Notifier,
    PaymentGateway,
    TransientGatewayError,
)
from dotmac_shared.business_logic.operations.models import (
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
from dotmac_shared.business_logic.persistence._sql import insert_for, refresh_statistics
from dotmac_shared.business_logic.persistence._types import utcnow

__all__ = [
    "BillingRunSteps",
    "Fence",
    "PartitionScope",
    "billing_run_id",
    "invoice_id",
]

#: An invoice whose charge was not submitted yet: the only status compensation voids.
OPEN = "open"
#: An invoice whose charge was (or is being) submitted: in doubt until its payment is recorded.
CHARGING = "charging"
VOID = "void"

logger = get_logger(__name__)

#: Commits a partition's progress (counts added, ``resume_after`` set) in the session's
#: transaction, and raises if the worker no longer holds the partition (the batch rolls back).
Fence = Callable[[AsyncSession, dict[str, Any]], Awaitable[None]]


class PartitionScope(Protocol):
    """Which customers a partition covers: ``(customer_after, customer_last]`` of a run."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def billing_period(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def customer_after(self) -> str: ...
    @property
    def customer_last(self) -> str | None: ...
    @property
    def resume_after(self) -> str: ...


#: A charge's result, or why there is none (no payment method, gateway unavailable).
_Outcome = tuple[ChargeResult | None, str | None]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def _check_attempt(attempt: object) -> int:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise InvalidInputError(
            f"a billing attempt is a whole number from 1, got {attempt!r}", field="attempt"
        )
    return attempt


def billing_run_id(tenant_id: str, period: str, attempt: int = 1) -> str:
    """The id of attempt ``attempt`` of a tenant's billing run for a period (also its saga id).

    Attempt 1 keeps the id runs always had, ``br_<digest>``; attempt n is ``br_<digest>:a<n>``.

    Raises:
        InvalidInputError: ``attempt`` is not a whole number from 1 (field ``attempt``).
    """
    base = "br_" + _digest(tenant_id, period)
    return base if _check_attempt(attempt) == 1 else f"{base}:a{attempt}"


def invoice_id(tenant_id: str, customer_id: str, period: str, attempt: int = 1) -> str:
    """The id of a customer's invoice for a period in one attempt: the same on every retry.

    Raises:
        InvalidInputError: ``attempt`` is not a whole number from 1 (field ``attempt``).
    """
    if _check_attempt(attempt) == 1:
        return "inv_" + _digest(tenant_id, customer_id, period)
    return "inv_" + _digest(tenant_id, customer_id, period, f"a{attempt}")


@dataclasses.dataclass
class BillingRunSteps:
    """What each billing-run step does, given its collaborators.

    Args:
        session_factory: The spec's ``session_factory``.
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

    async def validate_period(
        self, tenant_id: str, period_text: object, *, attempt: int = 1
    ) -> dict[str, Any]:
        """Check the period and open (or reopen) the attempt's run; refuses a finalized period.

        Raises:
            InvalidInputError: A malformed or future period, an unknown tenant, a bad attempt.
            BillingRunError: The period is finalized (by this attempt or another).
        """
        period = BillingPeriod.parse(period_text)
        period.ensure_not_future(self.now())
        run_id = billing_run_id(tenant_id, str(period), attempt)
        async with self.session_factory() as session, session.begin():
            if await session.get(Tenant, tenant_id) is None:
                raise InvalidInputError(f"unknown tenant {tenant_id!r}", field="tenant_id")
            await session.execute(
                insert_for(session, BillingRun)
                .values(
                    id=run_id,
                    tenant_id=tenant_id,
                    billing_period=str(period),
                    status="running",
                    attempt=attempt,
                    saga_id=run_id,
                )
                .on_conflict_do_nothing()
            )
            runs = (
                await session.execute(
                    select(BillingRun).where(
                        BillingRun.tenant_id == tenant_id,
                        BillingRun.billing_period == str(period),
                    )
                )
            ).scalars()
            run = None
            for other in runs:
                if other.status == "finalized":
                    raise BillingRunError(
                        f"billing period {period} of tenant {tenant_id} is already finalized",
                        billing_run_id=other.id,
                        tenant_id=tenant_id,
                    )
                if other.id == run_id:
                    run = other
                elif other.attempt < attempt:
                    # Attempt n starts only after attempt n-1's saga ended compensated, so an
                    # earlier row still "running" lost its cancel_run (its step never finished).
                    other.status = "cancelled"
            if run is None:  # pragma: no cover - inserted or present just above
                raise BillingRunError("billing run row missing", billing_run_id=run_id)
            run.status = "running"
        return {
            "billing_run_id": run_id,
            "tenant_id": tenant_id,
            "billing_period": str(period),
            "attempt": attempt,
        }

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

    async def generate_invoices(
        self, tenant_id: str, period_text: str, *, attempt: int = 1
    ) -> dict[str, Any]:
        """Invoice every customer with a service active in the period, exactly once.

        A later attempt first takes over the live invoices of the earlier ones (paid, failed
        or charge in doubt) and invoices only the customers that have none: their earlier
        invoices were voided before any charge was submitted.
        """
        period = BillingPeriod.parse(period_text)
        run_id = billing_run_id(tenant_id, period_text, attempt)
        carried_over = await self.carry_over(tenant_id, period_text, attempt=attempt)
        async with self.session_factory() as session:
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
                    session, tenant_id, period, (run_id, attempt), customer_ids, tax_rate
                )
            BILLING_CUSTOMERS_PROCESSED.add(len(customer_ids), {"tenant": tenant_id})
        result = {"invoices_created": created, "customers_seen": customers_seen}
        if attempt > 1:
            result["invoices_carried_over"] = carried_over
        return result

    async def carry_over(self, tenant_id: str, period_text: str, *, attempt: int = 1) -> int:
        """Refresh the planner's statistics; from attempt 2, take over earlier live invoices.

        Returns how many invoices of earlier attempts (paid, failed or charge in doubt) now
        belong to this attempt's run (0 for attempt 1, and on a re-run).
        """
        run_id = billing_run_id(tenant_id, period_text, attempt)
        async with self.session_factory() as session, session.begin():
            await refresh_statistics(session, Customer.__tablename__, Service.__tablename__)
            if attempt == 1:
                return 0
            earlier = [billing_run_id(tenant_id, period_text, n) for n in range(1, attempt)]
            moved = await session.execute(
                update(Invoice)
                .where(Invoice.billing_run_id.in_(earlier), Invoice.status != VOID)
                .values(billing_run_id=run_id)
                .returning(Invoice.id)
            )
            return len(moved.all())

    async def invoice_partition(self, part: PartitionScope, fence: Fence) -> None:
        """Invoice the customers of one partition, batch by batch, from where it stopped.

        Each batch commits its invoices together with ``fence`` (the partition's new resume
        point and counts, written only while this worker still holds the partition), so a
        batch is counted once, and a worker that lost the partition commits nothing more.
        """
        period = BillingPeriod.parse(part.billing_period)
        run = (billing_run_id(part.tenant_id, part.billing_period, part.attempt), part.attempt)
        async with self.session_factory() as session:
            tax_rate = await self._tax_rate(session, part.tenant_id)
        after = max(part.customer_after, part.resume_after)
        while True:
            async with self.session_factory() as session, session.begin():
                query = select(Customer.id).where(
                    Customer.tenant_id == part.tenant_id, Customer.id > after
                )
                if part.customer_last is not None:
                    query = query.where(Customer.id <= part.customer_last)
                customer_ids = list(
                    (
                        await session.execute(query.order_by(Customer.id).limit(self.batch_size))
                    ).scalars()
                )
                if not customer_ids:
                    return
                after = customer_ids[-1]
                created = await self._invoice_batch(
                    session, part.tenant_id, period, run, customer_ids, tax_rate
                )
                await fence(
                    session,
                    {
                        "resume_after": after,
                        "invoices_created": created,
                        "customers_seen": len(customer_ids),
                    },
                )
            BILLING_CUSTOMERS_PROCESSED.add(len(customer_ids), {"tenant": part.tenant_id})

    async def charge_partition(self, part: PartitionScope, fence: Fence) -> None:
        """Charge the invoices of one partition's customers: in-doubt ones first, then open.

        The same rules as :meth:`process_payments` (a charge key per invoice, ``open`` →
        ``charging`` committed before the gateway sees it), with the flip and the recorded
        payments fenced on the partition's claim.

        Raises:
            Exception: What the gateway raised for a charge that stays in doubt.
        """
        run_id = billing_run_id(part.tenant_id, part.billing_period, part.attempt)
        for status in (CHARGING, OPEN):
            after = part.customer_after
            while True:
                # Walks ix_dotmac_invoices_run_status_customer over the partition's range.
                query = (
                    select(
                        Invoice.id,
                        Invoice.customer_id,
                        Invoice.total,
                        Invoice.currency,
                        BillingAccount.payment_method_token.label("token"),
                    )
                    .outerjoin(BillingAccount, BillingAccount.customer_id == Invoice.customer_id)
                    .where(
                        Invoice.billing_run_id == run_id,
                        Invoice.status == status,
                        Invoice.customer_id > after,
                    )
                )
                if part.customer_last is not None:
                    query = query.where(Invoice.customer_id <= part.customer_last)
                async with self.session_factory() as session:
                    batch = [
                        dict(row._mapping)
                        for row in await session.execute(
                            query.order_by(Invoice.customer_id).limit(self.batch_size)
                        )
                    ]
                if not batch:
                    break
                after = batch[-1]["customer_id"]
                if status == OPEN:
                    batch = await self._mark_charging(batch, fence)
                if not batch:
                    continue
                outcomes, errors = await self._charge_all(batch)
                answered = [
                    (inv, out) for inv, out in zip(batch, outcomes, strict=True) if out is not None
                ]
                if answered:
                    counts = {"paid": 0, "declined": 0, "failed": 0}

                    async def count(session: AsyncSession, counts: dict[str, int] = counts) -> None:
                        await fence(session, dict(counts))

                    await self._record_payments(
                        part.tenant_id,
                        [inv for inv, _ in answered],
                        [out for _, out in answered],
                        counts,
                        fence=count,
                    )
                if errors:
                    raise errors[0]  # the unanswered charges stay "charging", as in a run

    async def _invoice_batch(
        self,
        session: AsyncSession,
        tenant_id: str,
        period: BillingPeriod,
        run: tuple[str, int],
        customer_ids: Sequence[str],
        tax_rate: Decimal,
    ) -> int:
        run_id, attempt = run
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
            inv = invoice_id(tenant_id, customer_id, str(period), attempt)
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
                    "status": OPEN,
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
        # invoices that exist (their id), and a later attempt skips customers that still have
        # a live invoice for the period (the unique index on live invoices), and their lines.
        inserted = await session.execute(
            insert_for(session, Invoice).on_conflict_do_nothing().returning(Invoice.id),
            invoices,
        )
        new_ids = set(inserted.scalars())
        new_lines = [line for line in lines if line["invoice_id"] in new_ids]
        if new_lines:
            await session.execute(insert_for(session, InvoiceLine), new_lines)
        return len(new_ids)

    async def void_open_invoices(
        self, tenant_id: str, period_text: str, *, attempt: int = 1
    ) -> int:
        """Compensation of generate_invoices: void the run's invoices not submitted for charging.

        Invoices left ``charging`` (the charge may have gone through) stay live: the next
        attempt finishes their charge with the same key instead of invoicing the customer again.
        """
        run_id = billing_run_id(tenant_id, period_text, attempt)
        async with self.session_factory() as session, session.begin():
            result = await session.execute(
                update(Invoice)
                .where(Invoice.billing_run_id == run_id, Invoice.status == OPEN)
                .values(status=VOID)
                .returning(Invoice.id)
            )
            voided = len(result.all())
            in_doubt = (
                await session.execute(
                    select(func.count(Invoice.id)).where(
                        Invoice.billing_run_id == run_id, Invoice.status == CHARGING
                    )
                )
            ).scalar_one()
        if in_doubt:
            logger.warning(
                "billing run %s compensated with %s charges in doubt; the next attempt "
                "finishes them with their own keys",
                run_id,
                in_doubt,
            )
        return voided

    # --- 3. process payments -----------------------------------------------------------

    async def _charge_one(self, request: ChargeRequest) -> _Outcome:
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
    ) -> tuple[list[_Outcome | None], list[BaseException]]:
        """Charge a batch: in one submission if the gateway takes batches, else concurrently.

        Returns:
            Each invoice's outcome, ``None`` where the gateway raised (the charge is in
            doubt), and what it raised.
        """
        outcomes: list[_Outcome | None] = [(None, "no payment method on file") for _ in batch]
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

        async def charge(request: ChargeRequest) -> _Outcome:
            async with limiter:
                return await self._charge_one(request)

        # Every charge of the batch ends before an error is raised: none keeps running behind
        # a failed step, and the ones that went through are recorded before it fails.
        results = await asyncio.gather(
            *(charge(request) for _, request in pending), return_exceptions=True
        )
        errors: list[BaseException] = []
        for (i, _), result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                errors.append(result)
                outcomes[i] = None
            else:
                outcomes[i] = result
        return outcomes, errors

    async def process_payments(
        self, tenant_id: str, period_text: str, *, attempt: int = 1
    ) -> dict[str, Any]:
        """Charge every invoice of the run once; declines are recorded, not fatal.

        Charges in doubt (``charging``: submitted by a worker that died, or by an earlier
        attempt that was compensated) are finished first, with their own keys; then every
        ``open`` invoice is marked ``charging`` and charged, batch by batch.
        """
        run_id = billing_run_id(tenant_id, period_text, attempt)
        counts = {"paid": 0, "declined": 0, "failed": 0}
        async with self.session_factory() as session, session.begin():
            await refresh_statistics(
                session, Invoice.__tablename__
            )  # just bulk-inserted by the last step
        for status in (CHARGING, OPEN):
            await self._charge_invoices(tenant_id, run_id, status, counts)
        return counts

    async def _charge_invoices(
        self, tenant_id: str, run_id: str, status: str, counts: dict[str, int]
    ) -> None:
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
                        .where(Invoice.billing_run_id == run_id, Invoice.status == status)
                        .where(Invoice.id > after)
                        .order_by(Invoice.id)
                        .limit(self.batch_size)
                    )
                ]
            if not batch:
                return
            after = batch[-1]["id"]
            if status == OPEN:
                batch = await self._mark_charging(batch)
            if not batch:
                continue
            outcomes, errors = await self._charge_all(batch)
            answered = [
                (inv, out) for inv, out in zip(batch, outcomes, strict=True) if out is not None
            ]
            if answered:
                await self._record_payments(
                    tenant_id, [inv for inv, _ in answered], [out for _, out in answered], counts
                )
            if errors:
                # The unanswered charges stay "charging": the step fails, compensation leaves
                # them live, and whoever runs next finishes them with the same keys.
                raise errors[0]

    async def _mark_charging(
        self, batch: list[dict[str, Any]], fence: Fence | None = None
    ) -> list[dict[str, Any]]:
        """Commit ``open`` → ``charging`` before the gateway sees the batch; keep what flipped.

        Compensation voids with ``WHERE status = 'open'``, so each invoice is decided by
        whichever of the two updates reaches its row first: one that was voided is not
        charged, and one that is being charged is not voided.
        """
        async with self.session_factory() as session, session.begin():
            if fence is not None:
                await fence(session, {})  # no charge is submitted for a lost partition
            flipped = set(
                (
                    await session.execute(
                        update(Invoice)
                        .where(Invoice.id.in_([inv["id"] for inv in batch]))
                        .where(Invoice.status == OPEN)
                        .values(status=CHARGING)
                        .returning(Invoice.id)
                    )
                ).scalars()
            )
        return [inv for inv in batch if inv["id"] in flipped]

    async def _record_payments(
        self,
        tenant_id: str,
        batch: Sequence[dict[str, Any]],
        outcomes: Sequence[_Outcome],
        counts: dict[str, int],
        fence: Callable[[AsyncSession], Awaitable[None]] | None = None,
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
                        .where(Invoice.id.in_(ids), Invoice.status == CHARGING)
                        .values(status=new_status)
                    )
            if fence is not None:
                await fence(session)

    # --- 4. send notifications ---------------------------------------------------------

    async def send_notifications(
        self, tenant_id: str, period_text: str, *, attempt: int = 1
    ) -> dict[str, Any]:
        """Queue an invoice notice per invoice and a failure notice per failed payment."""
        run_id = billing_run_id(tenant_id, period_text, attempt)
        queued = 0
        async with self.session_factory() as session, session.begin():
            await refresh_statistics(
                session, Invoice.__tablename__
            )  # statuses just changed in bulk
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

    async def finalize(
        self, tenant_id: str, period_text: str, *, attempt: int = 1
    ) -> dict[str, Any]:
        """Close the run with a report: counts, totals and the customers whose payment failed."""
        run_id = billing_run_id(tenant_id, period_text, attempt)
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
                "attempt": attempt,
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
