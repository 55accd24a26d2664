"""Demo data: the spec's example records, and optionally many more customers for billing runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.operations._adapters import (
    TOKEN_DECLINED,
    TOKEN_SUCCESS,
    TOKEN_TRANSIENT,
)
from dotmac_shared.business_logic.operations._catalog import (
    DEFAULT_TAX_RATE,
    INTERNET_BANDWIDTH_MBPS,
    PLAN_ELIGIBILITY,
    SERVICE_PRICES,
)
from dotmac_shared.business_logic.operations._tenant_steps import licensing
from dotmac_shared.business_logic.operations.models import (
    BillingAccount,
    Customer,
    Resource,
    ResourcePool,
    Service,
    ServicePlan,
    Tenant,
    TenantSetting,
)
from dotmac_shared.business_logic.persistence._sql import insert_for

__all__ = ["DEMO_CUSTOMER_ID", "DEMO_TENANT_ID", "SeedSummary", "plan_id", "seed_demo_data"]

DEMO_TENANT_ID = "tenant123"
DEMO_CUSTOMER_ID = "cust789"
_BATCH = 1_000
# Seeded services start here, so every later month bills in full (a few start mid-month).
_SERVICE_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
# The spec's example customer, as its "Policy Evaluation" example gives it.
_SPEC_CUSTOMER_PROFILE = {
    "id": DEMO_CUSTOMER_ID,
    "customer_type": "residential",
    "credit_score": 650,
    "outstanding_balance": 0.0,
    "location": {"service_coverage": True},
}


@dataclasses.dataclass(frozen=True, slots=True)
class SeedSummary:
    """How many rows of each kind ``seed_demo_data`` added (0 on a repeat run)."""

    tenants: int
    plans: int
    customers: int
    services: int
    addresses: int


def plan_id(tenant_id: str, service_type: str, level: str) -> str:
    """Return the id of a tenant's plan: ``<tenant>:<service_type>:<level>``."""
    return f"{tenant_id}:{service_type}:{level}"


def demo_token(index: int) -> str:
    """Payment token of the ``index``-th seeded customer: mostly good, a few that decline."""
    if index % 50 == 49:
        return TOKEN_DECLINED
    if index % 97 == 96:
        return TOKEN_TRANSIENT
    return TOKEN_SUCCESS


async def _insert_ignoring_duplicates(
    session: AsyncSession, model: Any, rows: Sequence[dict[str, Any]], key: Sequence[str]
) -> int:
    """Insert ``rows`` in batches; rows whose ``key`` exists already are skipped."""
    added = 0
    for start in range(0, len(rows), _BATCH):
        batch = rows[start : start + _BATCH]
        stmt = insert_for(session, model).on_conflict_do_nothing(index_elements=list(key))
        result = await session.execute(stmt.returning(*[getattr(model, k) for k in key]), batch)
        added += len(result.all())
    return added


def _customer_rows(tenant_id: str, count: int) -> tuple[list[dict[str, Any]], ...]:
    customers, services, accounts = [], [], []
    internet_standard = plan_id(tenant_id, "internet", "standard")
    for i in range(count):
        cid = f"cust_{i:06d}"
        token = demo_token(i)
        customers.append(
            {
                "id": cid,
                "tenant_id": tenant_id,
                "name": f"Customer {i}",
                "email": f"{cid}@example.com",
                "customer_type": "residential",
                "profile": {
                    "id": cid,
                    "customer_type": "residential",
                    "credit_score": 600 + i % 200,
                    "outstanding_balance": 0.0,
                    "location": {"service_coverage": True},
                },
                "payment_method_token": token,
                "status": "active",
            }
        )
        # Every tenth customer joined mid-October 2026, so their first invoice is prorated.
        started = _SERVICE_START if i % 10 else dt.datetime(2026, 10, 16, tzinfo=dt.UTC)
        services.append(
            {
                "id": f"svc_{cid}",
                "tenant_id": tenant_id,
                "customer_id": cid,
                "plan_id": internet_standard,
                "service_type": "internet",
                "billing_cycle": "monthly",
                "monthly_price": SERVICE_PRICES["internet"]["standard"],
                "status": "active",
                "configuration": {},
                "started_at": started,
            }
        )
        accounts.append(
            {
                "id": f"ba_{cid}",
                "tenant_id": tenant_id,
                "customer_id": cid,
                "currency": "USD",
                "payment_method_token": token,
            }
        )
    return customers, services, accounts


async def seed_demo_data(
    session_factory: async_sessionmaker[AsyncSession],
    customers: int = 0,
    *,
    address_pool: str = "10.20.0.0/22",
) -> SeedSummary:
    """Create the spec's example records; ``customers=N`` adds N billable customers.

    Creates tenant ``tenant123`` (plan basic), the residential customer ``cust789`` with the
    spec's data, every service plan of the catalog (internet ``standard`` among them) and an
    IPv4 address pool. Running it again adds nothing that exists already.

    Raises:
        InvalidInputError: ``customers`` is negative or ``address_pool`` is not a network.
    """
    tenant_id = DEMO_TENANT_ID
    if customers < 0:
        raise InvalidInputError(f"customers must be >= 0, got {customers}", field="customers")
    try:
        network = ipaddress.ip_network(address_pool)
    except ValueError as exc:
        raise InvalidInputError(f"bad address pool {address_pool!r}", field="address_pool") from exc

    async with session_factory() as session, session.begin():
        tenants = await _insert_ignoring_duplicates(
            session,
            Tenant,
            [
                {
                    "id": tenant_id,
                    "name": "Demo ISP",
                    "domain": "demo-isp",
                    "plan": "basic",
                    "admin_email": "admin@demo-isp.example",
                    "status": "active",
                    "activated_at": _SERVICE_START,
                }
            ],
            ["id"],
        )
        settings = {**licensing().plan_defaults("basic"), "tax_rate": str(DEFAULT_TAX_RATE)}
        await _insert_ignoring_duplicates(
            session,
            TenantSetting,
            [{"tenant_id": tenant_id, "key": k, "value": v} for k, v in settings.items()],
            ["tenant_id", "key"],
        )
        plans = await _insert_ignoring_duplicates(
            session,
            ServicePlan,
            [
                {
                    "id": plan_id(tenant_id, service_type, level),
                    "tenant_id": tenant_id,
                    "service_type": service_type,
                    "code": level,
                    "monthly_price": price,
                    "bandwidth_mbps": INTERNET_BANDWIDTH_MBPS[level]
                    if service_type == "internet"
                    else 0,
                    "eligibility_plan": PLAN_ELIGIBILITY[level],
                }
                for service_type, levels in SERVICE_PRICES.items()
                for level, price in levels.items()
            ],
            ["id"],
        )
        pool_id = f"{tenant_id}:ipv4:default"
        await _insert_ignoring_duplicates(
            session,
            ResourcePool,
            [{"id": pool_id, "tenant_id": tenant_id, "resource_type": "ipv4", "name": "default"}],
            ["id"],
        )
        addresses = await _insert_ignoring_duplicates(
            session,
            Resource,
            [{"pool_id": pool_id, "value": str(host)} for host in network.hosts()],
            ["pool_id", "value"],
        )
        spec_customer = {
            "id": DEMO_CUSTOMER_ID,
            "tenant_id": tenant_id,
            "name": "Spec Example Customer",
            "email": "cust789@example.com",
            "customer_type": "residential",
            "profile": _SPEC_CUSTOMER_PROFILE,
            "payment_method_token": TOKEN_SUCCESS,
            "status": "active",
        }
        customer_rows, service_rows, account_rows = _customer_rows(tenant_id, customers)
        added_customers = await _insert_ignoring_duplicates(
            session, Customer, [spec_customer, *customer_rows], ["id"]
        )
        await _insert_ignoring_duplicates(
            session,
            BillingAccount,
            [
                {
                    "id": f"ba_{DEMO_CUSTOMER_ID}",
                    "tenant_id": tenant_id,
                    "customer_id": DEMO_CUSTOMER_ID,
                    "currency": "USD",
                    "payment_method_token": TOKEN_SUCCESS,
                },
                *account_rows,
            ],
            ["customer_id"],
        )
        added_services = await _insert_ignoring_duplicates(session, Service, service_rows, ["id"])
    return SeedSummary(
        tenants=tenants,
        plans=plans,
        customers=added_customers,
        services=added_services,
        addresses=addresses,
    )
