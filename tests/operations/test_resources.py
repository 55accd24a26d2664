from __future__ import annotations

import asyncio
import multiprocessing

import pytest
from sqlalchemy import func, select

from dotmac_shared.business_logic import ProvisioningError, create_session_factory
from dotmac_shared.business_logic.operations._resources import allocate_resource, release_resources
from dotmac_shared.business_logic.operations.models import (
    Resource,
    ResourceAllocation,
    ResourcePool,
    Tenant,
)
from dotmac_shared.business_logic.persistence import engine_of


async def make_pool(factory, size: int, tenant_id: str = "t1") -> None:
    async with factory() as session, session.begin():
        session.add(
            Tenant(
                id=tenant_id,
                name="T",
                domain=f"{tenant_id}-isp",
                plan="basic",
                admin_email="a@b.c",
                status="active",
            )
        )
        await session.flush()
        session.add(
            ResourcePool(
                id=f"{tenant_id}:pool", tenant_id=tenant_id, resource_type="ipv4", name="p"
            )
        )
        await session.flush()
        session.add_all(
            Resource(pool_id=f"{tenant_id}:pool", value=f"10.0.0.{i + 1}") for i in range(size)
        )


async def allocate(factory, service_id: str, tenant_id: str = "t1") -> str:
    async with factory() as session, session.begin():
        return await allocate_resource(
            session, tenant_id=tenant_id, resource_type="ipv4", service_id=service_id
        )


async def test_each_service_gets_its_own_address_until_the_pool_is_empty(session_factory):
    await make_pool(session_factory, 3)
    got = [await allocate(session_factory, f"svc-{i}") for i in range(3)]
    assert sorted(got) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    with pytest.raises(ProvisioningError, match="no free ipv4"):
        await allocate(session_factory, "svc-4")


async def test_allocation_is_idempotent_per_service(session_factory):
    await make_pool(session_factory, 3)
    assert await allocate(session_factory, "svc-1") == await allocate(session_factory, "svc-1")


async def test_released_address_can_be_given_again(session_factory):
    await make_pool(session_factory, 1)
    first = await allocate(session_factory, "svc-1")
    async with session_factory() as session, session.begin():
        assert await release_resources(session, service_id="svc-1") == 1
    assert await allocate(session_factory, "svc-2") == first


async def test_other_tenants_pools_are_never_used(session_factory):
    await make_pool(session_factory, 2, "t1")
    await make_pool(session_factory, 0, "t2")
    with pytest.raises(ProvisioningError):
        await allocate(session_factory, "svc-x", tenant_id="t2")


async def test_concurrent_tasks_never_share_an_address(session_factory):
    await make_pool(session_factory, 10)
    outcomes = await asyncio.gather(
        *(allocate(session_factory, f"svc-{i}") for i in range(20)), return_exceptions=True
    )
    addresses = [o for o in outcomes if isinstance(o, str)]
    assert len(addresses) == len(set(addresses)) == 10
    assert all(isinstance(o, ProvisioningError) for o in outcomes if not isinstance(o, str))


def _allocate_in_child(url: str, worker: int, queue) -> None:
    async def run() -> list[str]:
        factory = create_session_factory(url, migrate=False)
        got = []
        try:
            for i in range(5):
                try:
                    got.append(await allocate(factory, f"svc-{worker}-{i}"))
                except ProvisioningError:
                    got.append("exhausted")
        finally:
            await engine_of(factory).dispose()
        return got

    queue.put(asyncio.run(run()))


@pytest.mark.reliability
async def test_processes_racing_for_a_small_pool_never_share_an_address(
    session_factory, database_url
):
    await make_pool(session_factory, 10)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_allocate_in_child, args=(database_url, w, queue)) for w in range(4)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    outcomes = [a for got in results for a in got]
    addresses = [a for a in outcomes if a != "exhausted"]
    assert len(outcomes) == 20
    assert len(addresses) == len(set(addresses)) == 10
    async with session_factory() as session:
        count = (
            await session.execute(select(func.count()).select_from(ResourceAllocation))
        ).scalar()
    assert count == 10
