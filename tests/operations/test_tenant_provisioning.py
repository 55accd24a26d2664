"""Tenant provisioning: idempotent per payload, refused cleanly on a taken domain."""

from __future__ import annotations

from sqlalchemy import func, select, text

from dotmac_shared.business_logic import IdempotencyKey, IdempotencyManager
from dotmac_shared.business_logic.operations import seed_demo_data
from dotmac_shared.business_logic.operations.models import Tenant, TenantSetting
from dotmac_shared.business_logic.persistence import engine_of


def request(domain: str, plan: str = "basic") -> dict:
    return {"name": "Acme", "domain": domain, "plan": plan, "admin_email": "ops@acme.example"}


async def provision(manager: IdempotencyManager, data: dict):
    key = IdempotencyKey.generate("tenant_provisioning", "tenant123", data)
    return await manager.execute_idempotent(key, data, {"user_id": "u1"})


async def rows(factory, stmt) -> int:
    async with factory() as session:
        return (await session.execute(stmt)).scalar_one()


async def tenant_tables(factory, tenant_id: str) -> int:
    if engine_of(factory).dialect.name == "postgresql":
        sql = "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = :s"
        return await rows(factory, text(sql).bindparams(s=tenant_id))
    sql = "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name LIKE :p"
    return await rows(factory, text(sql).bindparams(p=f"{tenant_id}__%"))


async def test_same_payload_twice_provisions_once_when_the_second_call_hits_the_cache(
    session_factory,
):
    manager = IdempotencyManager(session_factory)
    first = await provision(manager, request("acme", plan="pro"))
    second = await provision(manager, request("acme", plan="pro"))
    assert first.success and second.from_cache and second.data == first.data
    tenant_id = first.data["tenant_id"]
    assert first.data["settings"]["max_users"] == 1000
    assert first.data["settings"]["max_bandwidth_mbps"] == 1000
    assert await rows(session_factory, select(func.count()).where(Tenant.domain == "acme")) == 1
    async with session_factory() as session:
        tenant = await session.get(Tenant, tenant_id)
        assert tenant is not None and tenant.status == "active"
    assert await tenant_tables(session_factory, tenant_id) >= 1


async def test_taken_domain_is_a_clear_failure_and_leaves_nothing_when_provisioning(
    session_factory,
):
    await seed_demo_data(session_factory)  # tenant123 owns "demo-isp"
    manager = IdempotencyManager(session_factory)
    result = await provision(manager, request("demo-isp"))
    assert not result.success
    assert "demo-isp" in result.error["message"] and "taken" in result.error["message"]
    assert result.error["code"] == "provisioning_error"
    failed_tenant = result.error["resource_id"]
    async with session_factory() as session:
        assert await session.get(Tenant, failed_tenant) is None
    settings = select(func.count()).where(TenantSetting.tenant_id == failed_tenant)
    assert await rows(session_factory, settings) == 0
    assert await tenant_tables(session_factory, failed_tenant) == 0


async def test_invalid_request_is_refused_before_anything_runs_when_fields_are_bad(
    session_factory,
):
    manager = IdempotencyManager(session_factory)
    bad = {**request("Not A Domain!"), "admin_email": "nope"}
    result = await provision(manager, bad)
    assert not result.success and result.error["field"] == "domain"
    unknown_plan = await provision(manager, request("fine-domain", plan="gold"))
    assert not unknown_plan.success and "plan" in unknown_plan.error["message"]
    assert await rows(session_factory, select(func.count()).select_from(Tenant)) == 0
