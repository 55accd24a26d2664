"""The tables behind the saga store: one row per saga, one per step execution."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dotmac_shared.business_logic.persistence._types import JSONDocument, UTCDateTime, utcnow
from dotmac_shared.business_logic.persistence.models._base import Base

#: A failure: ``{"code", "message", "step", "context"}``; SQL NULL when there is none.
_Failure = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

__all__ = ["SagaEventEntry", "SagaExecution", "SagaStepExecution"]


class SagaExecution(Base):
    """A saga's durable state; the lease says which worker owns it until when."""

    __tablename__ = "dotmac_saga_executions"

    saga_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    saga_name: Mapped[str] = mapped_column(String(255))
    saga_version: Mapped[str] = mapped_column(String(32))
    tenant_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    correlation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    initial_data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    context: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    # The failure that made the saga compensate: {"code", "message", "step", "context"}.
    error: Mapped[dict[str, Any] | None] = mapped_column(_Failure, nullable=True)
    failed_step: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Set by cancel_saga(); the worker driving the saga compensates at the next step boundary.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deadline_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        # The recovery worker's query: unfinished sagas whose lease ran out.
        Index("ix_dotmac_saga_executions_status_lease", "status", "lease_expires_at"),
        Index("ix_dotmac_saga_executions_tenant_status", "tenant_id", "status"),
    )


class SagaStepExecution(Base):
    """One step of one saga; ``(saga_id, step_name)`` is also the step's idempotency key."""

    __tablename__ = "dotmac_saga_step_executions"

    saga_id: Mapped[str] = mapped_column(
        String(64),
        ForeignKey("dotmac_saga_executions.saga_id", ondelete="CASCADE"),
        primary_key=True,
    )
    step_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    step_index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    compensation_attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    # The step's (or its compensation's) failure: {"code", "message", "step", "context"}.
    error: Mapped[dict[str, Any] | None] = mapped_column(_Failure, nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    compensated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SagaEventEntry(Base):
    """One entry of a saga's history: a transition of the saga or a step, or an operator action.

    Appended in the same transaction as the state change it records; never updated. ``id``
    orders a saga's history (entries of one state change are inserted in order).
    """

    __tablename__ = "dotmac_saga_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    saga_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dotmac_saga_executions.saga_id", ondelete="CASCADE")
    )
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # What happened: "saga.<status>", "step.<status>", or "action.<repair action>".
    kind: Mapped[str] = mapped_column(String(64))
    step_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The worker (lease owner) that wrote it; the operator and why, for a manual action.
    worker: Mapped[str | None] = mapped_column(String(64), nullable=True)
    operator: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(_Failure, nullable=True)
    data: Mapped[dict[str, Any] | None] = mapped_column(_Failure, nullable=True)

    __table_args__ = (Index("ix_dotmac_saga_events_saga_id_id", "saga_id", "id"),)
