"""What a saga and each of its steps know while they run."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.observability._context import get_correlation_id

__all__ = ["SagaContext", "StepContext"]


@dataclasses.dataclass(frozen=True, slots=True)
class SagaContext:
    """Who a saga runs for: ids that travel with every step, log record and error.

    Example:
        >>> ctx = SagaContext(saga_id="s-1", tenant_id="tenant123", user_id="user456")
    """

    saga_id: str
    tenant_id: str | None = None
    user_id: str | None = None
    correlation_id: str = dataclasses.field(default_factory=get_correlation_id)
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as stored with the saga."""
        return {
            "saga_id": self.saga_id,
            "tenant_id": self.tenant_id,
            "user_id": self.user_id,
            "correlation_id": self.correlation_id,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SagaContext:
        """Rebuild a context stored by :meth:`to_dict`."""
        return cls(
            saga_id=str(data["saga_id"]),
            tenant_id=data.get("tenant_id"),
            user_id=data.get("user_id"),
            correlation_id=str(data.get("correlation_id") or get_correlation_id()),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class StepContext:
    """Everything one step execution (or compensation) is given.

    Attributes:
        saga_id: The saga's id.
        step_name: This step's name.
        step_index: This step's position (0-based).
        idempotency_key: ``"<saga_id>:<step_name>"``; the same on every retry and after a
            crash, so pass it to anything external to make the at-least-once step safe.
        data: The initial data plus every earlier step's result (read-only).
        context: The saga's context (tenant, user, correlation id).
        attempt: 1 for the first try, 2 for the first retry, ... A compensation's count
            goes on across crashes and resumes (each try is recorded before it runs).
        result: For a compensation, what this step's execute returned (``None`` if it never
            finished); ``None`` for an execution.
        session_factory: The coordinator's ``session_factory``, for steps that write.
        step_results: Each earlier step's result by step name (read-only).
    """

    saga_id: str
    step_name: str
    step_index: int
    idempotency_key: str
    data: Mapping[str, Any]
    context: SagaContext
    attempt: int
    session_factory: async_sessionmaker[AsyncSession]
    result: Mapping[str, Any] | None = None
    step_results: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def tenant_id(self) -> str | None:
        """The saga's tenant."""
        return self.context.tenant_id

    @property
    def user_id(self) -> str | None:
        """The saga's user."""
        return self.context.user_id
