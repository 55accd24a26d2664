"""Customers, the service plans they buy, their services and billing accounts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dotmac_shared.business_logic.operations.models._base import DomainBase
from dotmac_shared.business_logic.persistence._types import (
    JSONDocument,
    Money,
    UTCDateTime,
    utcnow,
)

__all__ = ["BillingAccount", "Customer", "Service", "ServicePlan"]


class Customer(DomainBase):
    """A subscriber of a tenant; ``profile`` holds the data eligibility policies read."""

    __tablename__ = "dotmac_customers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_tenants.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320))
    customer_type: Mapped[str] = mapped_column(String(32))
    profile: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    payment_method_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(32), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_dotmac_customers_tenant_id_id", "tenant_id", "id"),)


class ServicePlan(DomainBase):
    """A sellable plan: a service type at a level (basic .. enterprise) with a monthly price."""

    __tablename__ = "dotmac_service_plans"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_tenants.id", ondelete="CASCADE")
    )
    service_type: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(32))
    monthly_price: Mapped[Decimal] = mapped_column(Money)
    bandwidth_mbps: Mapped[int] = mapped_column(Integer, default=0)
    eligibility_plan: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("tenant_id", "service_type", "code"),)


class Service(DomainBase):
    """A customer's subscription to a plan; billed from ``started_at`` until ``ended_at``."""

    __tablename__ = "dotmac_services"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_tenants.id", ondelete="CASCADE")
    )
    customer_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_customers.id", ondelete="CASCADE")
    )
    plan_id: Mapped[str] = mapped_column(String(64), ForeignKey("dotmac_service_plans.id"))
    service_type: Mapped[str] = mapped_column(String(32))
    billing_cycle: Mapped[str] = mapped_column(String(16))
    monthly_price: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(32))
    configuration: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    saga_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_dotmac_services_tenant_customer", "tenant_id", "customer_id"),)


class BillingAccount(DomainBase):
    """Where a customer's invoices are charged; one per customer."""

    __tablename__ = "dotmac_billing_accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_tenants.id", ondelete="CASCADE")
    )
    customer_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_customers.id", ondelete="CASCADE"), unique=True
    )
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    payment_method_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
