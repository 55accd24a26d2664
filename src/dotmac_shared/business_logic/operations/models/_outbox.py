"""The transactional outbox: notifications written with the state change they announce."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dotmac_shared.business_logic.operations.models._base import DomainBase
from dotmac_shared.business_logic.persistence._types import JSONDocument, UTCDateTime, utcnow

__all__ = ["OutboxMessage"]


class OutboxMessage(DomainBase):
    """A notification waiting for delivery; ``dedupe_key`` makes a retried write a no-op."""

    __tablename__ = "dotmac_notification_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_dotmac_notification_outbox_unsent", "sent_at", "id"),)
