from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from dotmac_shared.business_logic import InvalidInputError
from dotmac_shared.business_logic.operations._seed import (
    DEMO_CUSTOMER_ID,
    DEMO_TENANT_ID,
    demo_token,
    plan_id,
    seed_demo_data,
)
from dotmac_shared.business_logic.operations.models import (
    BillingAccount,
    Customer,
    Resource,
    Service,
    ServicePlan,
    Tenant,
    TenantSetting,
)


async def _count(factory, model) -> int:
    async with factory() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def test_seed_creates_the_spec_records(session_factory):
    summary = await seed_demo_data(session_factory)
    assert summary.tenants == 1 and summary.customers == 1 and summary.plans == 16
    async with session_factory() as session:
        tenant = await session.get(Tenant, DEMO_TENANT_ID)
        customer = await session.get(Customer, DEMO_CUSTOMER_ID)
        plan = await session.get(ServicePlan, plan_id(DEMO_TENANT_ID, "internet", "standard"))
        tax = await session.get(TenantSetting, (DEMO_TENANT_ID, "tax_rate"))
    assert tenant is not None and tenant.status == "active"
    assert customer is not None and customer.profile == {
        "id": "cust789",
        "customer_type": "residential",
        "credit_score": 650,
        "outstanding_balance": 0.0,
        "location": {"service_coverage": True},
    }
    assert plan is not None and plan.monthly_price == Decimal("49.99")
    assert tax is not None and Decimal(tax.value) == Decimal("0.0875")
    assert await _count(session_factory, Resource) == 1022  # hosts of a /22


async def test_seed_twice_adds_nothing_the_second_time(session_factory):
    await seed_demo_data(session_factory, customers=30)
    again = await seed_demo_data(session_factory, customers=30)
    assert (again.tenants, again.customers, again.services, again.addresses) == (0, 0, 0, 0)
    assert await _count(session_factory, Customer) == 31
    assert await _count(session_factory, Service) == 30
    assert await _count(session_factory, BillingAccount) == 31


async def test_seeded_customers_include_a_few_that_decline(session_factory):
    await seed_demo_data(session_factory, customers=100)
    async with session_factory() as session:
        tokens = (await session.execute(select(BillingAccount.payment_method_token))).scalars()
        counted = {t: 0 for t in ("tok_success", "tok_declined", "tok_transient")}
        for token in tokens:
            counted[token] += 1
    assert counted == {"tok_success": 98, "tok_declined": 2, "tok_transient": 1}
    assert [demo_token(i) for i in (0, 49, 96)] == ["tok_success", "tok_declined", "tok_transient"]


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"customers": -1}, "customers"), ({"address_pool": "x"}, "address_pool")]
)
async def test_bad_arguments_are_refused_before_anything_is_written(session_factory, kwargs, field):
    with pytest.raises(InvalidInputError) as info:
        await seed_demo_data(session_factory, **kwargs)
    assert info.value.field == field
    assert await _count(session_factory, Tenant) == 0
