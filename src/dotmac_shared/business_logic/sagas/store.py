"""Durable saga state behind a ``Protocol``, and its SQL implementation for both databases.

The store writes what the coordinator decided; the state machine lives in ``states.py``.
Every write that belongs to a running saga is fenced by the lease: it only lands if the
writer still owns the saga, so a worker that stalled past its lease cannot overwrite the
progress of the worker that took over (it gets :class:`SagaLeaseLostError` and stops).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.exceptions import SagaLeaseLostError
from dotmac_shared.business_logic.persistence.models import SagaExecution, SagaStepExecution
from dotmac_shared.business_logic.persistence.sql import insert_for
from dotmac_shared.business_logic.persistence.types import utcnow
from dotmac_shared.business_logic.sagas.states import SagaStatus, StepStatus

__all__ = ["SagaRecord", "SagaStore", "SqlSagaStore", "StepRecord"]

_ACTIVE = (SagaStatus.RUNNING.value, SagaStatus.COMPENSATING.value)


@dataclasses.dataclass
class StepRecord:
    """One step's durable state."""

    name: str
    index: int
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    compensation_attempts: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    compensated_at: dt.datetime | None = None


@dataclasses.dataclass
class SagaRecord:
    """A saga's durable state, as loaded by the store."""

    saga_id: str
    saga_name: str
    saga_version: str
    status: SagaStatus
    initial_data: dict[str, Any]
    context: dict[str, Any]
    tenant_id: str | None = None
    user_id: str | None = None
    correlation_id: str | None = None
    current_step: int = 0
    error: str | None = None
    failed_step: str | None = None
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = None
    deadline_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    steps: dict[str, StepRecord] = dataclasses.field(default_factory=dict)


class SagaStore(Protocol):
    """What the coordinator needs from durable storage."""

    async def create(self, record: SagaRecord, owner: str, lease_seconds: float) -> bool:
        """Insert a new saga owned by ``owner``; False if the id exists already."""
        ...

    async def load(self, saga_id: str) -> SagaRecord | None:
        """Return the saga with its steps, or None."""
        ...

    async def acquire(self, saga_id: str, owner: str, lease_seconds: float) -> bool:
        """Take the lease of an active saga if it is free, expired or ours already."""
        ...

    async def renew(self, saga_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend ``owner``'s lease; False if it was lost."""
        ...

    async def reopen(self, saga_id: str, owner: str, lease_seconds: float) -> bool:
        """Move a ``compensation_failed`` saga back to ``compensating``, leased to ``owner``."""
        ...

    async def save(self, record: SagaRecord, steps: Sequence[StepRecord], owner: str) -> bool:
        """Write the saga row and ``steps`` in one transaction, fenced by the lease.

        Returns whether a cancel was requested.
        """
        ...

    async def request_cancel(self, saga_id: str) -> bool:
        """Flag an active saga for cancellation; False if it is not active."""
        ...

    async def claim_expired(self, owner: str, lease_seconds: float, limit: int) -> list[str]:
        """Take over up to ``limit`` active sagas whose lease expired; return their ids."""
        ...

    async def list(
        self, *, tenant_id: str | None, status: SagaStatus | None, limit: int
    ) -> list[SagaRecord]:
        """Sagas, newest first, filtered by tenant and status (steps not loaded)."""
        ...


def _lease_until(lease_seconds: float) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=lease_seconds)


def _to_record(row: SagaExecution) -> SagaRecord:
    return SagaRecord(
        saga_id=row.saga_id,
        saga_name=row.saga_name,
        saga_version=row.saga_version,
        status=SagaStatus(row.status),
        initial_data=dict(row.initial_data),
        context=dict(row.context),
        tenant_id=row.tenant_id,
        user_id=row.user_id,
        correlation_id=row.correlation_id,
        current_step=row.current_step,
        error=row.error,
        failed_step=row.failed_step,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        deadline_at=row.deadline_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
    )


def _saga_values(record: SagaRecord) -> dict[str, Any]:
    return {
        "status": record.status.value,
        "current_step": record.current_step,
        "error": record.error,
        "failed_step": record.failed_step,
        "completed_at": record.completed_at,
        "updated_at": utcnow(),
    }


def _step_values(saga_id: str, step: StepRecord) -> dict[str, Any]:
    return {
        "saga_id": saga_id,
        "step_name": step.name,
        "step_index": step.index,
        "status": step.status.value,
        "attempts": step.attempts,
        "compensation_attempts": step.compensation_attempts,
        "result": step.result,
        "error": step.error,
        "started_at": step.started_at,
        "completed_at": step.completed_at,
        "compensated_at": step.compensated_at,
    }


class SqlSagaStore:
    """The saga store on SQLite or PostgreSQL (one code path; the URL picks the dialect)."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def create(self, record: SagaRecord, owner: str, lease_seconds: float) -> bool:
        """Insert a new saga owned by ``owner``; False if the id exists already."""
        now = utcnow()
        async with self._session_factory() as session, session.begin():
            inserted = await session.execute(
                insert_for(session, SagaExecution)
                .values(
                    saga_id=record.saga_id,
                    saga_name=record.saga_name,
                    saga_version=record.saga_version,
                    tenant_id=record.tenant_id,
                    user_id=record.user_id,
                    correlation_id=record.correlation_id,
                    status=record.status.value,
                    current_step=0,
                    initial_data=record.initial_data,
                    context=record.context,
                    cancel_requested=False,
                    lease_owner=owner,
                    lease_expires_at=_lease_until(lease_seconds),
                    deadline_at=record.deadline_at,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["saga_id"])
                .returning(SagaExecution.saga_id)
            )
            return inserted.first() is not None

    async def load(self, saga_id: str) -> SagaRecord | None:
        """Return the saga with its steps, or None."""
        async with self._session_factory() as session:
            row = await session.get(SagaExecution, saga_id)
            if row is None:
                return None
            record = _to_record(row)
            steps = await session.execute(
                select(SagaStepExecution)
                .where(SagaStepExecution.saga_id == saga_id)
                .order_by(SagaStepExecution.step_index)
            )
            for step in steps.scalars():
                record.steps[step.step_name] = StepRecord(
                    name=step.step_name,
                    index=step.step_index,
                    status=StepStatus(step.status),
                    attempts=step.attempts,
                    compensation_attempts=step.compensation_attempts,
                    result=step.result,
                    error=step.error,
                    started_at=step.started_at,
                    completed_at=step.completed_at,
                    compensated_at=step.compensated_at,
                )
        return record

    async def acquire(self, saga_id: str, owner: str, lease_seconds: float) -> bool:
        """Take the lease of an active saga if it is free, expired or ours already."""
        now = utcnow()
        async with self._session_factory() as session, session.begin():
            result = await session.execute(
                update(SagaExecution)
                .where(SagaExecution.saga_id == saga_id, SagaExecution.status.in_(_ACTIVE))
                .where(
                    or_(
                        SagaExecution.lease_owner.is_(None),
                        SagaExecution.lease_owner == owner,
                        SagaExecution.lease_expires_at < now,
                    )
                )
                .values(lease_owner=owner, lease_expires_at=_lease_until(lease_seconds))
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def renew(self, saga_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend ``owner``'s lease; False if it was lost."""
        async with self._session_factory() as session, session.begin():
            result = await session.execute(
                update(SagaExecution)
                .where(SagaExecution.saga_id == saga_id, SagaExecution.lease_owner == owner)
                .values(lease_expires_at=_lease_until(lease_seconds))
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def reopen(self, saga_id: str, owner: str, lease_seconds: float) -> bool:
        """Move a ``compensation_failed`` saga back to ``compensating``, leased to ``owner``."""
        async with self._session_factory() as session, session.begin():
            result = await session.execute(
                update(SagaExecution)
                .where(
                    SagaExecution.saga_id == saga_id,
                    SagaExecution.status == SagaStatus.COMPENSATION_FAILED.value,
                )
                .values(
                    status=SagaStatus.COMPENSATING.value,
                    completed_at=None,
                    lease_owner=owner,
                    lease_expires_at=_lease_until(lease_seconds),
                )
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def save(self, record: SagaRecord, steps: Sequence[StepRecord], owner: str) -> bool:
        """Write the saga row and ``steps`` in one transaction, fenced by the lease.

        Returns whether a cancel was requested (the driving worker then compensates).

        Raises:
            SagaLeaseLostError: ``owner`` no longer holds the lease; nothing was written.
        """
        values = _saga_values(record)
        if not record.status.is_active:
            values.update(lease_owner=None, lease_expires_at=None)  # final: nobody owns it
        async with self._session_factory() as session, session.begin():
            fenced = await session.execute(
                update(SagaExecution)
                .where(SagaExecution.saga_id == record.saga_id)
                .where(SagaExecution.lease_owner == owner)
                .values(**values)
                .returning(SagaExecution.cancel_requested)
            )
            cancel = fenced.scalar_one_or_none()
            if cancel is None:
                raise SagaLeaseLostError(
                    f"saga {record.saga_id}: lease lost; another worker owns it now",
                    saga_id=record.saga_id,
                    saga_name=record.saga_name,
                )
            for step in steps:
                row = _step_values(record.saga_id, step)
                await session.execute(
                    insert_for(session, SagaStepExecution)
                    .values(**row)
                    .on_conflict_do_update(
                        index_elements=["saga_id", "step_name"],
                        set_={k: v for k, v in row.items() if k not in ("saga_id", "step_name")},
                    )
                )
        return bool(cancel)

    async def request_cancel(self, saga_id: str) -> bool:
        """Flag an active saga for cancellation; False if it is not active."""
        async with self._session_factory() as session, session.begin():
            result = await session.execute(
                update(SagaExecution)
                .where(SagaExecution.saga_id == saga_id, SagaExecution.status.in_(_ACTIVE))
                .values(cancel_requested=True)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def claim_expired(self, owner: str, lease_seconds: float, limit: int) -> list[str]:
        """Take over up to ``limit`` active sagas whose lease expired; return their ids.

        On PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets several workers scan at once without
        waiting on each other's candidates. The conditional UPDATE is the real guard (and the
        only one on SQLite, which ignores ``FOR UPDATE``): of two claimers, one matches.
        """
        now = utcnow()
        claimed: list[str] = []
        async with self._session_factory() as session, session.begin():
            candidates = await session.execute(
                select(SagaExecution.saga_id, SagaExecution.lease_owner)
                .where(SagaExecution.status.in_(_ACTIVE), SagaExecution.lease_expires_at < now)
                .order_by(SagaExecution.lease_expires_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            for saga_id, previous_owner in candidates.all():
                taken = await session.execute(
                    update(SagaExecution)
                    .where(SagaExecution.saga_id == saga_id, SagaExecution.status.in_(_ACTIVE))
                    .where(SagaExecution.lease_expires_at < now)
                    .where(
                        SagaExecution.lease_owner.is_(None)
                        if previous_owner is None
                        else SagaExecution.lease_owner == previous_owner
                    )
                    .values(lease_owner=owner, lease_expires_at=_lease_until(lease_seconds))
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount:  # type: ignore[attr-defined]
                    claimed.append(saga_id)
        return claimed

    async def list(
        self, *, tenant_id: str | None, status: SagaStatus | None, limit: int
    ) -> list[SagaRecord]:
        """Sagas, newest first, filtered by tenant and status (steps not loaded)."""
        query = select(SagaExecution).order_by(SagaExecution.created_at.desc()).limit(limit)
        if tenant_id is not None:
            query = query.where(SagaExecution.tenant_id == tenant_id)
        if status is not None:
            query = query.where(SagaExecution.status == status.value)
        async with self._session_factory() as session:
            return [_to_record(row) for row in (await session.execute(query)).scalars()]
