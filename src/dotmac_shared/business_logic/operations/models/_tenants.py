"""Tenants of the platform and their settings."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from dotmac_shared.business_logic.operations.models._base import DomainBase
from dotmac_shared.business_logic.persistence._types import JSONDocument, UTCDateTime, utcnow

__all__ = ["Tenant", "TenantSetting"]


class Tenant(DomainBase):
    """An ISP tenant; ``domain`` is unique across the platform."""

    __tablename__ = "dotmac_tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    domain: Mapped[str] = mapped_column(String(63), unique=True)
    plan: Mapped[str] = mapped_column(String(32))
    admin_email: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(32))
    # The PostgreSQL schema holding the tenant's own tables (None until configured).
    schema_name: Mapped[str | None] = mapped_column(String(63), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TenantSetting(DomainBase):
    """One named setting of a tenant (limits from its plan, tax rate, ...)."""

    __tablename__ = "dotmac_tenant_settings"

    tenant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_tenants.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONDocument)
