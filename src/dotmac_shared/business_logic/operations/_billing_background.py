"""Billing runs for callers that must not wait: start one, then read its progress and report.

:func:`start_billing_run` returns as soon as the run's saga is committed (so its id is
durable) and drives it on a background task. If the process dies before the run ends, the
saga's lease expires and a recovery worker (``SagaWorker(shipped_coordinator(factory))``,
``dotmac-bl worker``, or the one ``dotmac-bl serve`` runs) finishes it.
:func:`billing_run_progress` reads where a run is and, once finalized, its report.

Example:
    >>> started = await start_billing_run(factory, "tenant123", "2026-10")  # doctest: +SKIP
    >>> progress = await billing_run_progress(
    ...     factory, "tenant123", started.billing_run_id
    ... )  # doctest: +SKIP
    >>> progress.to_dict()["status"]  # doctest: +SKIP
    'running'
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.clock import Clock, as_clock
from dotmac_shared.business_logic.exceptions import BillingRunError, InvalidInputError, SagaError
from dotmac_shared.business_logic.operations._billing_math import BillingPeriod
from dotmac_shared.business_logic.operations._billing_run import (
    BillingRunSaga,
    billing_attempts,
    billing_saga,
    billing_saga_input,
    next_billing_attempt,
)
from dotmac_shared.business_logic.operations.models import BillingPartition, BillingRun, Tenant
from dotmac_shared.business_logic.sagas import SagaContext, SagaCoordinator

__all__ = [
    "BillingRunProgress",
    "BillingRunStart",
    "billing_run_progress",
    "start_billing_run",
]


@dataclasses.dataclass(frozen=True, slots=True)
class BillingRunStart:
    """A billing run that was started (or found started) by :func:`start_billing_run`.

    Attributes:
        billing_run_id: The attempt's id, also its saga id; pass it to
            :func:`billing_run_progress`.
        tenant_id: The tenant billed.
        billing_period: The period, ``YYYY-MM``.
        attempt: The attempt's number (1 unless ``retry`` started a later one).
        task: The background task driving the run in this process; it ends with the run's
            saga outcome. Awaiting it is optional: the run goes on without anyone waiting.
    """

    billing_run_id: str
    tenant_id: str
    billing_period: str
    attempt: int
    task: asyncio.Task[Mapping[str, Any]] = dataclasses.field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The start as a JSON-safe dict (without the task)."""
        return {
            "billing_run_id": self.billing_run_id,
            "tenant_id": self.tenant_id,
            "billing_period": self.billing_period,
            "attempt": self.attempt,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class BillingRunProgress:
    """Where a billing run is, and its report once finalized.

    Attributes:
        billing_run_id: The attempt's id (also its saga id).
        tenant_id: The tenant billed.
        billing_period: The period, ``YYYY-MM`` (``None`` if the saga has not validated it).
        attempt: The attempt's number.
        status: The saga's status: ``running``, ``compensating``, ``completed``,
            ``compensated``, ``compensation_failed`` or ``incident`` (a step past the payments
            kept failing: a person must look).
        run_status: The billing run's own status (``open``, ``finalized``, ``cancelled``,
            ...), ``None`` before its first step wrote the run.
        steps_total: How many steps the run has.
        steps_completed: How many of them completed.
        current_step: The step running now, if any.
        error: Why the run failed, if it did.
        failed_step: The step that failed, if any.
        report: The finalize step's report (invoices, totals, failed customers), once
            finalized; JSON-safe (amounts are strings).
        partitions: How many of the run's customer partitions are in each state
            (``invoicing``, ``invoiced``, ``charging``, ``charged``, ``failed``,
            ``cancelled``); empty before the run cut its customers into partitions.
    """

    billing_run_id: str
    tenant_id: str
    billing_period: str | None
    attempt: int
    status: str
    run_status: str | None
    steps_total: int
    steps_completed: int
    current_step: str | None
    error: str | None
    failed_step: str | None
    report: Mapping[str, Any] | None
    partitions: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """True once the run completed or was compensated (or waits for a person)."""
        return self.status not in {"running", "compensating"}

    def to_dict(self) -> dict[str, Any]:
        """The progress as a JSON-safe dict."""
        return {
            "billing_run_id": self.billing_run_id,
            "tenant_id": self.tenant_id,
            "billing_period": self.billing_period,
            "attempt": self.attempt,
            "status": self.status,
            "run_status": self.run_status,
            "finished": self.finished,
            "steps_total": self.steps_total,
            "steps_completed": self.steps_completed,
            "current_step": self.current_step,
            "error": self.error,
            "failed_step": self.failed_step,
            "report": _json_safe(self.report) if self.report is not None else None,
            "partitions": dict(self.partitions),
        }


def _json_safe(value: Any) -> Any:
    """Stored reports are JSON already; this keeps any non-JSON scalar a string."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    return str(value)


@functools.cache
def _step_count() -> int:
    return len(BillingRunSaga.create_definition().steps)


#: Closings of coordinators whose run was cancelled, held until they end (the event loop
#: keeps only weak references to tasks).
_CLOSING: set[asyncio.Task[None]] = set()


def _follow(coordinator: SagaCoordinator, saga_id: str, tenant_id: str) -> asyncio.Task[Any]:
    """A task that ends with the outcome of the saga ``coordinator`` runs in the background.

    Cancelling the task stops the run (the coordinator is this run's alone): the saga keeps
    its lease until it expires, then a recovery worker resumes it (its state is durable at
    every step boundary). A done callback does it, not a ``finally`` in the task: a task
    cancelled before it first ran never enters its body.
    """
    task = asyncio.create_task(
        coordinator.wait(saga_id, tenant_id=tenant_id), name=f"billing run {saga_id}"
    )

    def stop_if_cancelled(done: asyncio.Task[Any]) -> None:
        if done.cancelled():
            closing = asyncio.get_running_loop().create_task(coordinator.aclose())
            _CLOSING.add(closing)
            closing.add_done_callback(_CLOSING.discard)

    task.add_done_callback(stop_if_cancelled)
    return task


async def _raise(error: BaseException) -> Mapping[str, Any]:
    """A run another worker drives: what starting it here came to."""
    raise error


async def _require_tenant(factory: async_sessionmaker[AsyncSession], tenant_id: str) -> None:
    async with factory() as session:
        if await session.get(Tenant, tenant_id) is None:
            raise InvalidInputError(f"unknown tenant {tenant_id!r}", field="tenant_id")


async def start_billing_run(
    session_factory: async_sessionmaker[AsyncSession],
    tenant_id: str,
    billing_period: str,
    *,
    retry: bool = False,
    user_id: str | None = None,
    lease_seconds: float = 30.0,
    clock: Clock | None = None,
) -> BillingRunStart:
    """Start a tenant's billing run for a period without waiting for it to end.

    The run's saga is committed before this returns; the run itself goes on in a
    background task of the running event loop (:attr:`BillingRunStart.task`). Starting a
    period that is already running or finished returns that attempt (nothing runs twice).

    Args:
        session_factory: The migrated session factory.
        tenant_id: The tenant to bill.
        billing_period: The period, ``YYYY-MM``; not in the future.
        retry: Start a new attempt after a compensated one (see :func:`run_billing`).
        user_id: Who asked, recorded on the saga.
        lease_seconds: The saga's lease; after a crash a worker resumes it this long after
            its last renewal.
        clock: Where times come from (the system clock by default).

    Returns:
        The attempt's id, number and the task driving it.

    Raises:
        InvalidInputError: A malformed or future period, or an unknown tenant.
        BillingRunError: ``retry`` when the latest attempt did not end compensated.
    """
    wall = as_clock(clock)
    period = BillingPeriod.parse(billing_period)
    period.ensure_not_future(wall.now())
    canonical = str(period)
    await _require_tenant(session_factory, tenant_id)
    coordinator = SagaCoordinator(session_factory, lease_seconds=lease_seconds, clock=wall)
    coordinator.register_saga(
        BillingRunSaga.create_definition(partition_lease_seconds=lease_seconds, clock=wall)
    )
    # Refuses a retry (completed, running, never run) before anything is written.
    attempt = next_billing_attempt(
        await billing_attempts(coordinator, tenant_id, canonical), tenant_id, canonical, retry=retry
    )
    task: asyncio.Task[Mapping[str, Any]]
    try:
        # Returns once the saga's record is committed (or the existing one checked): the id
        # is durable, and a recovery worker takes the run over if this process dies.
        await coordinator.start_saga(
            BillingRunSaga.name,
            SagaContext(saga_id=attempt.saga_id, tenant_id=tenant_id, user_id=user_id),
            billing_saga_input(tenant_id, canonical, attempt),
        )
    except SagaError as exc:
        if exc.code != SagaError.code:
            raise  # a conflict, a definition error...: the run was refused
        # Another live worker drives this attempt (a concurrent start): it is durable and
        # runs; nothing runs twice. The task ends with why it does not run here.
        task = asyncio.create_task(_raise(exc), name=f"billing run {attempt.saga_id}")
    else:
        task = _follow(coordinator, attempt.saga_id, tenant_id)
    return BillingRunStart(
        billing_run_id=attempt.saga_id,
        tenant_id=tenant_id,
        billing_period=canonical,
        attempt=attempt.number,
        task=task,
    )


async def billing_run_progress(
    session_factory: async_sessionmaker[AsyncSession],
    tenant_id: str,
    billing_run_id: str,
) -> BillingRunProgress:
    """Where a tenant's billing run is, and its report once finalized.

    Args:
        session_factory: The migrated session factory.
        tenant_id: The tenant the run belongs to; another tenant's run is not found.
        billing_run_id: The id :func:`start_billing_run` returned.

    Raises:
        BillingRunError: No billing run of ``tenant_id`` has that id
            (``metadata["reason"] == "not_found"``).
    """
    coordinator = SagaCoordinator(session_factory)
    saga = await billing_saga(coordinator, tenant_id, billing_run_id)
    if saga is None or saga["saga_name"] != BillingRunSaga.name:
        raise BillingRunError(
            f"no billing run with id {billing_run_id!r}",
            billing_run_id=billing_run_id,
            tenant_id=tenant_id,
            metadata={"reason": "not_found"},
        )
    async with session_factory() as session:
        run = (
            await session.execute(
                select(BillingRun).where(
                    BillingRun.id == billing_run_id, BillingRun.tenant_id == tenant_id
                )
            )
        ).scalar_one_or_none()
        partitions = (
            await session.execute(
                select(BillingPartition.status, func.count())
                .where(
                    BillingPartition.run_id == billing_run_id,
                    BillingPartition.tenant_id == tenant_id,
                )
                .group_by(BillingPartition.status)
            )
        ).all()
    steps = list(saga["steps"])
    data = saga["initial_data"]
    attempt = data.get("attempt", 1)
    period = data.get("billing_period")
    report = run.report if run is not None and run.status == "finalized" else None
    return BillingRunProgress(
        billing_run_id=billing_run_id,
        tenant_id=tenant_id,
        billing_period=run.billing_period if run is not None else (str(period) if period else None),
        attempt=run.attempt if run is not None else int(attempt),
        status=str(saga["status"]),
        run_status=run.status if run is not None else None,
        steps_total=_step_count(),
        steps_completed=sum(1 for step in steps if step["status"] == "completed"),
        current_step=next((s["name"] for s in steps if s["status"] == "running"), None),
        error=saga["error"],
        failed_step=saga["failed_step"],
        report=dict(report) if report else None,
        partitions={status: count for status, count in sorted(partitions)},
    )
