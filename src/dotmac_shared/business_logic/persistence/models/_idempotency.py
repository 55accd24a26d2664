"""The table behind the SQL idempotency store."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dotmac_shared.business_logic.persistence._types import JSONDocument, UTCDateTime, utcnow
from dotmac_shared.business_logic.persistence.models._base import Base

__all__ = ["IdempotencyRecord"]


class IdempotencyRecord(Base):
    """One claimed idempotency key.

    The composite primary key ``(tenant_id, idempotency_key)`` is the atomic claim: two callers
    inserting the same key cannot both succeed, and a tenant can never see another's record.
    """

    __tablename__ = "dotmac_idempotency_records"

    tenant_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    operation_type: Mapped[str] = mapped_column(String(255))
    payload_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_dotmac_idempotency_records_expires_at", "expires_at"),)
