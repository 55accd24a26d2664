"""The transactional outbox: notifications written with the state change they announce."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dotmac_shared.business_logic.operations.models._base import DomainBase
from dotmac_shared.business_logic.persistence._types import JSONDocument, UTCDateTime, utcnow

__all__ = ["OutboxMessage"]


class OutboxMessage(DomainBase):
    """A notification waiting for delivery; ``dedupe_key`` makes a retried write a no-op.

    The relay (``operations.notifications``) moves a row from ``pending`` to ``sent`` or
    ``dead``. ``next_attempt_at`` is when a pending row may be claimed: ``NULL`` (new) or a
    past time means now; a claim pushes it to the end of the claimer's lease (a visibility
    timeout, so a killed relay's rows come back by themselves) and a transient failure to
    the retry's time. ``claimed_by`` fences the outcome: only the relay whose claim is the
    latest may mark the row.
    """

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
    # pending | sent | dead (see operations.notifications.OutboxStatus).
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    # Claims so far: a claim counts as an attempt even if its relay died before an answer.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_dotmac_notification_outbox_unsent", "sent_at", "id"),
        Index("ix_dotmac_notification_outbox_due", "status", "next_attempt_at", "id"),
    )
