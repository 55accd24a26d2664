"""Billing runs, invoices and their lines, payments, and the sandbox gateway's own ledger."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from dotmac_shared.business_logic.operations.models._base import DomainBase
from dotmac_shared.business_logic.persistence._types import (
    JSONDocument,
    Money,
    UTCDateTime,
    utcnow,
)

__all__ = [
    "BillingPartition",
    "BillingRun",
    "GatewayLedgerEntry",
    "Invoice",
    "InvoiceLine",
    "Payment",
]


class BillingRun(DomainBase):
    """One attempt at a tenant's billing for one period; attempts are numbered from 1.

    A new attempt is started only after the previous one was compensated, so at most one
    attempt of a period is running or finalized.
    """

    __tablename__ = "dotmac_billing_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_tenants.id", ondelete="CASCADE")
    )
    billing_period: Mapped[str] = mapped_column(String(7))
    status: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    saga_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    report: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finalized_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (UniqueConstraint("tenant_id", "billing_period", "attempt"),)


class Invoice(DomainBase):
    """A customer's invoice for a period: one live (not void) per customer and period.

    A billing attempt that was compensated leaves its uncharged invoices void; the next
    attempt invoices those customers again, so void invoices stay as history beside the live one.
    """

    __tablename__ = "dotmac_invoices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_tenants.id", ondelete="CASCADE")
    )
    customer_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_customers.id", ondelete="CASCADE")
    )
    billing_period: Mapped[str] = mapped_column(String(7))
    billing_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    subtotal: Mapped[Decimal] = mapped_column(Money)
    tax: Mapped[Decimal] = mapped_column(Money)
    total: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index(
            "uq_dotmac_invoices_live_per_customer_period",
            "tenant_id",
            "customer_id",
            "billing_period",
            unique=True,
            sqlite_where=text("status <> 'void'"),
            postgresql_where=text("status <> 'void'"),
        ),
        # Keyset batches walk a run's invoices in id order: by status (payments) and in all
        # (notices). Without ``id`` last, each batch re-reads the whole run: O(n²).
        Index("ix_dotmac_invoices_run_status_id", "billing_run_id", "status", "id"),
        Index("ix_dotmac_invoices_run_id", "billing_run_id", "id"),
        # A billing partition charges its customers' invoices in customer order.
        Index("ix_dotmac_invoices_run_status_customer", "billing_run_id", "status", "customer_id"),
    )


class InvoiceLine(DomainBase):
    """One service's charge on an invoice, prorated by the days it was active."""

    __tablename__ = "dotmac_invoice_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_invoices.id", ondelete="CASCADE"), index=True
    )
    service_id: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(255))
    days: Mapped[int] = mapped_column(Integer)
    amount: Mapped[Decimal] = mapped_column(Money)


class Payment(DomainBase):
    """The outcome of charging an invoice; one row per invoice (the charge key is the invoice)."""

    __tablename__ = "dotmac_payments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_invoices.id", ondelete="CASCADE"), unique=True
    )
    tenant_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Money)
    gateway_reference: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class GatewayLedgerEntry(DomainBase):
    """The sandbox payment provider's own ledger: one charge per idempotency key, ever."""

    __tablename__ = "dotmac_gateway_ledger"

    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    payment_method_token: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class BillingPartition(DomainBase):
    """A slice of a billing run's customers that any worker process may claim and bill.

    A run's customers are cut into id ranges ``(customer_after, customer_last]`` (the last
    range is open-ended). A partition goes ``invoicing`` → ``invoiced`` → ``charging`` →
    ``charged``; the saga's steps open each stage and wait for every partition to pass it.
    A worker holds a partition while ``claimed_by`` is it and ``lease_until`` (the injected
    clock's time) has not passed; every batch it commits is fenced on ``claimed_by``, so a
    worker that lost its partition cannot write for it. ``failed`` and ``cancelled`` end a
    partition early (the run then compensates).
    """

    __tablename__ = "dotmac_billing_partitions"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tenant_id: Mapped[str] = mapped_column(String(64))
    billing_period: Mapped[str] = mapped_column(String(7))
    attempt: Mapped[int] = mapped_column(Integer)
    customer_after: Mapped[str] = mapped_column(String(64))
    customer_last: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Claims so far (a partition whose workers keep dying is failed after a few).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: The last customer whose invoice is committed, so a taken-over partition resumes there.
    resume_after: Mapped[str] = mapped_column(String(64), default="")
    invoices_created: Mapped[int] = mapped_column(Integer, default=0)
    customers_seen: Mapped[int] = mapped_column(Integer, default=0)
    paid: Mapped[int] = mapped_column(Integer, default=0)
    declined: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        # Claim loops look for claimable partitions of any run by status.
        Index("ix_dotmac_billing_partitions_status", "status", "lease_until"),
    )
