"""The decision log table: one row per recorded policy decision."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dotmac_shared.business_logic.persistence._types import JSONDocument, UTCDateTime
from dotmac_shared.business_logic.persistence.models._base import Base

__all__ = ["PolicyDecisionEntry"]


class PolicyDecisionEntry(Base):
    """A recorded policy decision (written in batches by ``SqlDecisionRecorder``).

    ``input`` is stored as recorded: redacted paths hold the redaction marker.
    """

    __tablename__ = "dotmac_policy_decisions"

    # SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64 bits.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    policy_name: Mapped[str] = mapped_column(String(200))
    policy_version: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    decision: Mapped[str] = mapped_column(String(32))
    failed_rules: Mapped[list[str]] = mapped_column(JSONDocument)
    input: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)

    __table_args__ = (
        Index("ix_dotmac_policy_decisions_policy", "policy_name", "recorded_at"),
        Index("ix_dotmac_policy_decisions_tenant", "tenant_id", "recorded_at"),
    )
