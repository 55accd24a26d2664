"""A customer's record as callers outside the database see it: typed, and JSON-safe.

Example:
    >>> record = await customer_record(factory, "tenant123", "cust789")  # doctest: +SKIP
    >>> record.to_dict()["services"][0]["monthly_price"]  # doctest: +SKIP
    '49.99'
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.operations.models import BillingAccount, Customer, Service

__all__ = ["CustomerRecord", "CustomerService", "customer_record"]


def _time(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclasses.dataclass(frozen=True, slots=True)
class CustomerService:
    """One service (subscription) of a customer.

    Attributes:
        service_id: The service's id.
        plan_id: The plan subscribed to.
        service_type: ``internet``, ``voice``, ...
        billing_cycle: ``monthly`` or ``annual``.
        monthly_price: The price per month.
        status: ``active``, ``suspended``, ``terminated``, ...
        saga_id: The provisioning saga that created it, if any.
        started_at: When billing started.
        ended_at: When billing ended, if it did.
    """

    service_id: str
    plan_id: str
    service_type: str
    billing_cycle: str
    monthly_price: Decimal
    status: str
    saga_id: str | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        """The service as a JSON-safe dict (money as a decimal string, times ISO 8601)."""
        return {
            "service_id": self.service_id,
            "plan_id": self.plan_id,
            "service_type": self.service_type,
            "billing_cycle": self.billing_cycle,
            "monthly_price": str(self.monthly_price),
            "status": self.status,
            "saga_id": self.saga_id,
            "started_at": _time(self.started_at),
            "ended_at": _time(self.ended_at),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class CustomerRecord:
    """A customer of a tenant with its profile, billing account and services.

    Attributes:
        customer_id: The customer's id.
        tenant_id: The tenant it belongs to.
        name: Its name.
        email: Its e-mail address.
        customer_type: ``residential``, ``business``, ...
        status: ``active``, ...
        profile: What eligibility policies read (credit score, address, ...).
        currency: Its billing account's currency, ``None`` without an account.
        has_payment_method: Whether a payment method is on file (the token is not shown).
        created_at: When it was created.
        services: Its services, oldest first.
    """

    customer_id: str
    tenant_id: str
    name: str
    email: str
    customer_type: str
    status: str
    profile: Mapping[str, Any]
    currency: str | None
    has_payment_method: bool
    created_at: dt.datetime
    services: tuple[CustomerService, ...]

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-safe dict."""
        return {
            "customer_id": self.customer_id,
            "tenant_id": self.tenant_id,
            "name": self.name,
            "email": self.email,
            "customer_type": self.customer_type,
            "status": self.status,
            "profile": dict(self.profile),
            "currency": self.currency,
            "has_payment_method": self.has_payment_method,
            "created_at": _time(self.created_at),
            "services": [service.to_dict() for service in self.services],
        }


async def customer_record(
    session_factory: async_sessionmaker[AsyncSession], tenant_id: str, customer_id: str
) -> CustomerRecord:
    """A tenant's customer with its billing account and services.

    Args:
        session_factory: The migrated session factory.
        tenant_id: The tenant the customer belongs to; another tenant's customer is
            reported exactly like a missing one.
        customer_id: The customer's id.

    Raises:
        InvalidInputError: No customer of ``tenant_id`` has that id (field
            ``customer_id``, ``metadata["reason"] == "not_found"``).
    """
    async with session_factory() as session:
        customer = (
            await session.execute(
                select(Customer).where(Customer.id == customer_id, Customer.tenant_id == tenant_id)
            )
        ).scalar_one_or_none()
        if customer is None:
            raise InvalidInputError(
                f"customer {customer_id!r} does not exist",
                field="customer_id",
                tenant_id=tenant_id,
                metadata={"reason": "not_found"},
            )
        account = (
            await session.execute(
                select(BillingAccount).where(
                    BillingAccount.customer_id == customer_id, BillingAccount.tenant_id == tenant_id
                )
            )
        ).scalar_one_or_none()
        services = (
            await session.execute(
                select(Service)
                .where(Service.tenant_id == tenant_id, Service.customer_id == customer_id)
                .order_by(Service.created_at, Service.id)
            )
        ).scalars()
        return CustomerRecord(
            customer_id=customer.id,
            tenant_id=customer.tenant_id,
            name=customer.name,
            email=customer.email,
            customer_type=customer.customer_type,
            status=customer.status,
            profile=dict(customer.profile or {}),
            currency=account.currency if account is not None else None,
            has_payment_method=bool(
                (account.payment_method_token if account is not None else None)
                or customer.payment_method_token
            ),
            created_at=customer.created_at,
            services=tuple(
                CustomerService(
                    service_id=s.id,
                    plan_id=s.plan_id,
                    service_type=s.service_type,
                    billing_cycle=s.billing_cycle,
                    monthly_price=s.monthly_price,
                    status=s.status,
                    saga_id=s.saga_id,
                    started_at=s.started_at,
                    ended_at=s.ended_at,
                )
                for s in services
            ),
        )
