from __future__ import annotations

import pytest
from sqlalchemy import func, inspect, select

from dotmac_shared.business_logic import InvalidInputError, ProvisioningError
from dotmac_shared.business_logic.operations._tenant_steps import (
    TenantProvisioningSteps,
    licensing,
    tenant_id_for,
    validate_tenant_request,
)
from dotmac_shared.business_logic.operations.models import Tenant, TenantSetting
from dotmac_shared.business_logic.persistence import engine_of

DATA = {
    "name": "New Tenant",
    "domain": "new-tenant",
    "plan": "basic",
    "admin_email": "admin@newtenant.com",
}


async def tenant_tables(factory, tenant_id: str) -> list[str]:
    async with engine_of(factory).connect() as conn:

        def names(sync_conn):
            inspector = inspect(sync_conn)
            if sync_conn.dialect.name == "postgresql":
                if tenant_id not in inspector.get_schema_names():
                    return []
                return sorted(inspector.get_table_names(schema=tenant_id))
            return sorted(t for t in inspector.get_table_names() if t.startswith(tenant_id))

        return await conn.run_sync(names)


async def provision(factory, saga_id="saga-t1", data=DATA) -> str:
    steps = TenantProvisioningSteps(factory)
    request = validate_tenant_request(data)
    tenant_id = tenant_id_for(saga_id)
    await steps.create_tenant(tenant_id, request)
    await steps.configure_database(tenant_id, request.admin_email)
    await steps.setup_defaults(tenant_id, request.plan, licensing().plan_defaults(request.plan))
    await steps.activate_tenant(tenant_id)
    return tenant_id


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"domain": "Bad_Domain"}, "domain"),
        ({"domain": "-x"}, "domain"),
        ({"domain": "a" * 64}, "domain"),
        ({"plan": "gold"}, "plan"),
        ({"admin_email": "not-an-email"}, "admin_email"),
    ],
)
def test_bad_request_is_refused_naming_the_field(change, field):
    with pytest.raises(InvalidInputError) as info:
        validate_tenant_request({**DATA, **change})
    assert info.value.field == field


async def test_provisioned_tenant_is_active_with_own_tables_and_plan_settings(session_factory):
    tenant_id = await provision(session_factory)
    async with session_factory() as session:
        tenant = await session.get(Tenant, tenant_id)
        settings = {
            s.key: s.value
            for s in (
                await session.execute(
                    select(TenantSetting).where(TenantSetting.tenant_id == tenant_id)
                )
            ).scalars()
        }
    assert tenant is not None and tenant.status == "active" and tenant.domain == "new-tenant"
    assert settings["max_users"] == 100 and settings["max_storage_gb"] == 50
    assert settings["max_bandwidth_mbps"] == 100 and settings["tax_rate"] == "0.0875"
    tables = await tenant_tables(session_factory, tenant_id)
    assert len(tables) == 2 and any(t.endswith("users") for t in tables)


async def test_every_step_can_run_twice(session_factory):
    assert await provision(session_factory) == await provision(session_factory)
    async with session_factory() as session:
        assert (await session.execute(select(func.count()).select_from(Tenant))).scalar() == 1


async def test_compensation_in_reverse_leaves_nothing_behind(session_factory):
    tenant_id = await provision(session_factory)
    steps = TenantProvisioningSteps(session_factory)
    await steps.deactivate_tenant(tenant_id)
    await steps.remove_defaults(tenant_id)
    await steps.drop_database(tenant_id)
    await steps.delete_tenant(tenant_id)
    assert await tenant_tables(session_factory, tenant_id) == []
    async with session_factory() as session:
        assert (await session.execute(select(func.count()).select_from(Tenant))).scalar() == 0
        assert (
            await session.execute(select(func.count()).select_from(TenantSetting))
        ).scalar() == 0


async def test_taken_domain_is_a_clear_error(session_factory):
    await provision(session_factory, "saga-a")
    steps = TenantProvisioningSteps(session_factory)
    with pytest.raises(ProvisioningError, match="already taken"):
        await steps.create_tenant(tenant_id_for("saga-b"), validate_tenant_request(DATA))
