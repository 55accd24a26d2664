"""Atomic allocation of pooled resources (IPv4 addresses) to services."""

from __future__ import annotations

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from dotmac_shared.business_logic.exceptions import ProvisioningError
from dotmac_shared.business_logic.operations.models import (
    Resource,
    ResourceAllocation,
    ResourcePool,
)
from dotmac_shared.business_logic.persistence._sql import insert_for

__all__ = ["allocate_resource", "release_resources"]

_CANDIDATES = 8


async def allocate_resource(
    session: AsyncSession,
    *,
    tenant_id: str,
    resource_type: str,
    service_id: str,
    saga_id: str | None = None,
) -> str:
    """Give ``service_id`` one free resource of the tenant's pools; returns its value.

    Idempotent per service: a service that already holds a resource of this type gets the
    same one back (a retried saga step must not take a second address).

    Raises:
        ProvisioningError: Every resource of that type is taken (or the tenant has none).
    """
    held = await session.execute(
        select(Resource.value)
        .join(ResourceAllocation, ResourceAllocation.resource_id == Resource.id)
        .join(ResourcePool, ResourcePool.id == Resource.pool_id)
        .where(ResourceAllocation.service_id == service_id)
        .where(ResourcePool.resource_type == resource_type)
    )
    existing = held.scalar_one_or_none()
    if existing is not None:
        return existing
    free = (
        select(Resource.id, Resource.value)
        .join(ResourcePool, ResourcePool.id == Resource.pool_id)
        .where(ResourcePool.tenant_id == tenant_id, ResourcePool.resource_type == resource_type)
        .where(~exists().where(ResourceAllocation.resource_id == Resource.id))
        .order_by(Resource.id)
        .limit(_CANDIDATES)
        # No FOR UPDATE SKIP LOCKED: locked-but-uncommitted rows would look taken, and an
        # allocator could report an empty pool while others still roll back. Uncommitted
        # allocations stay invisible here; the insert below waits for them instead.
    )
    while True:
        candidates = (await session.execute(free)).all()
        if not candidates:
            raise ProvisioningError(
                f"no free {resource_type} resource left for tenant {tenant_id}",
                operation="allocate_resources",
                resource_type=resource_type,
                tenant_id=tenant_id,
                metadata={"service_id": service_id},
            )
        for resource_id, value in candidates:
            # The primary key on resource_id is the real guard: of two allocators that saw
            # the same free row, exactly one insert lands; the other tries the next row.
            taken = await session.execute(
                insert_for(session, ResourceAllocation)
                .values(resource_id=resource_id, service_id=service_id, saga_id=saga_id)
                .on_conflict_do_nothing(index_elements=["resource_id"])
                .returning(ResourceAllocation.resource_id)
            )
            if taken.first() is not None:
                return str(value)


async def release_resources(session: AsyncSession, *, service_id: str) -> int:
    """Free every resource held by ``service_id``; returns how many were freed."""
    result = await session.execute(
        delete(ResourceAllocation)
        .where(ResourceAllocation.service_id == service_id)
        .returning(ResourceAllocation.resource_id)
    )
    return len(result.all())
