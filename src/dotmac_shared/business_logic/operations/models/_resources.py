"""Resource pools (e.g. IPv4 addresses), their allocations, and recorded network config."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dotmac_shared.business_logic.operations.models._base import DomainBase
from dotmac_shared.business_logic.persistence._types import JSONDocument, UTCDateTime, utcnow

__all__ = ["NetworkConfiguration", "Resource", "ResourceAllocation", "ResourcePool"]


class ResourcePool(DomainBase):
    """A tenant's pool of one kind of resource (``ipv4`` addresses, ...)."""

    __tablename__ = "dotmac_resource_pools"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_tenants.id", ondelete="CASCADE")
    )
    resource_type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255))

    __table_args__ = (UniqueConstraint("tenant_id", "resource_type", "name"),)


class Resource(DomainBase):
    """One allocatable unit of a pool, e.g. the address ``10.0.0.7``."""

    __tablename__ = "dotmac_resources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pool_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_resource_pools.id", ondelete="CASCADE")
    )
    value: Mapped[str] = mapped_column(String(255))

    __table_args__ = (UniqueConstraint("pool_id", "value"),)


class ResourceAllocation(DomainBase):
    """A resource given to a service; the unique ``resource_id`` makes double allocation fail."""

    __tablename__ = "dotmac_resource_allocations"

    resource_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("dotmac_resources.id", ondelete="CASCADE"), primary_key=True
    )
    service_id: Mapped[str] = mapped_column(String(64))
    saga_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    allocated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class NetworkConfiguration(DomainBase):
    """What the default network provisioner recorded for a service."""

    __tablename__ = "dotmac_network_configurations"

    service_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    configuration: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
