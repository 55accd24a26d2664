"""Commission configurations: rates per partner tier, optionally per partner."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dotmac_shared.business_logic.operations.models._base import DomainBase
from dotmac_shared.business_logic.persistence._types import Money, UTCDateTime, utcnow

__all__ = ["CommissionConfiguration"]


class CommissionConfiguration(DomainBase):
    """A commission rate for a tier (``partner_id`` empty) or one partner's override."""

    __tablename__ = "dotmac_commission_configurations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(255))
    tier: Mapped[str] = mapped_column(String(32))
    # Empty string, not NULL, for the tier default: NULLs never collide in a unique constraint.
    partner_id: Mapped[str] = mapped_column(String(255), default="")
    rate: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("tenant_id", "tier", "partner_id"),)
