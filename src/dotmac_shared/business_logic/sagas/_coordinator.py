"""The saga coordinator: runs sagas forward, compensates them backward, durably.

Every state change is committed before the next action, so any worker can pick a saga up
where a dead one left it: forward from the first step not completed (that step runs again:
steps are at-least-once, hence their idempotency key), or on with the compensation.

This module is the public API and one loop of I/O: load the saga and take its lease, ask
:func:`~dotmac_shared.business_logic.sagas._decide.decide` what comes next, save the state
change, act, repeat. What it leans on lives apart: the lease's renewal, deadline and fenced
writes in :mod:`~dotmac_shared.business_logic.sagas._lease`, running a step's action or
compensation (its context, its retries) in :mod:`~dotmac_shared.business_logic.sagas._acts`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import os
import socket
import uuid
from collections.abc import Coroutine, Mapping
from typing import Any

from opentelemetry.trace import Status, StatusCode
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.clock import Clock, as_clock
from dotmac_shared.business_logic.exceptions import (
    InvalidInputError,
    SagaConflictError,
    SagaDefinitionError,
    SagaError,
    SagaLeaseLostError,
    SagaNotFoundError,
    SagaRepairRefusedError,
)
from dotmac_shared.business_logic.observability._log import get_logger, log_context
from dotmac_shared.business_logic.observability._telemetry import (
    SAGA_FINISHED,
    start_span,
)
from dotmac_shared.business_logic.sagas import _acts, _repair
from dotmac_shared.business_logic.sagas._context import SagaContext
from dotmac_shared.business_logic.sagas._cursor import decode_cursor, encode_cursor
from dotmac_shared.business_logic.sagas._data import (
    json_object,
    saga_result,
    same_data,
)
from dotmac_shared.business_logic.sagas._decide import (
    Begin,
    CancelRequested,
    Compensate,
    Event,
    RunStep,
    decide,
)
from dotmac_shared.business_logic.sagas._definition import SagaDefinition
from dotmac_shared.business_logic.sagas._history import transitions
from dotmac_shared.business_logic.sagas._lease import LeaseKeeper, describe
from dotmac_shared.business_logic.sagas._results import (
    SagaEvent,
    SagaPage,
    SagaResult,
    SagaSummary,
)
from dotmac_shared.business_logic.sagas._scope import ALL_TENANTS, TenantScope, tenant_scope
from dotmac_shared.business_logic.sagas._states import SagaStatus
from dotmac_shared.business_logic.sagas._store import SagaRecord, SagaStore, SqlSagaStore

__all__ = ["SagaCoordinator"]

logger = get_logger(__name__)


class SagaCoordinator:
    """Registers saga definitions and runs sagas durably on the spec's ``db_session_factory``.

    Args:
        session_factory: An ``async_sessionmaker`` (see ``create_session_factory``).
        lease_seconds: How long a worker owns a saga without renewing; a saga whose worker
            died is taken over this long after its last renewal.
        owner_id: This worker's name in leases (host:pid:random by default).
        store: Where state lives (the SQL store on the session factory by default).
        clock: Where every wall time written or compared comes from (lease expiry, created,
            updated and completed times, deadlines); the system clock by default. The store
            the coordinator builds gets the same clock.

    A worker that cannot renew a lease (the database is unreachable) retries with backoff
    until shortly before the lease would expire, then cancels the running step and stops
    writing that saga: a step never runs on two workers at once.

    Example:
        >>> coordinator = SagaCoordinator(session_factory)  # doctest: +SKIP
        >>> coordinator.register_saga(definition)  # doctest: +SKIP
        >>> result = await coordinator.execute_saga(  # doctest: +SKIP
        ...     saga_name="service_provisioning", context=context, initial_data={...}
        ... )
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        lease_seconds: float = 30.0,
        owner_id: str | None = None,
        store: SagaStore | None = None,
        clock: Clock | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise InvalidInputError("lease_seconds must be positive", field="lease_seconds")
        self.session_factory = session_factory
        self.lease_seconds = lease_seconds
        self.owner_id = owner_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = as_clock(clock)
        self._store: SagaStore = store or SqlSagaStore(session_factory, clock=self.clock)
        # The leases of the sagas driven right now: renewal, and the writes made under them.
        self._leases = LeaseKeeper(self._store, self.owner_id, lease_seconds, self.clock)
        self._definitions: dict[str, SagaDefinition] = {}
        # Sagas this coordinator is driving right now: never drive one twice at once.
        self._driving: set[str] = set()
        # Sagas started with start_saga and still running here: their task and tenant.
        self._background: dict[str, tuple[asyncio.Task[SagaResult], str | None]] = {}

    # --- definitions -----------------------------------------------------------------

    def register_saga(self, definition: SagaDefinition) -> None:
        """Make ``definition`` runnable by name (registering a name again replaces it)."""
        if not isinstance(definition, SagaDefinition):
            raise SagaDefinitionError(
                f"register_saga takes a SagaDefinition, got {type(definition).__name__}"
            )
        self._definitions[definition.name] = definition

    @property
    def definitions(self) -> Mapping[str, SagaDefinition]:
        """The registered definitions by name."""
        return dict(self._definitions)

    def _definition(self, saga_name: str) -> SagaDefinition:
        try:
            return self._definitions[saga_name]
        except KeyError:
            known = ", ".join(sorted(self._definitions)) or "none"
            raise SagaDefinitionError(
                f"unknown saga {saga_name!r}; registered: {known}", saga_name=saga_name
            ) from None

    # --- public operations -----------------------------------------------------------

    async def execute_saga(
        self,
        saga_name: str,
        context: SagaContext,
        initial_data: Mapping[str, Any] | None = None,
    ) -> SagaResult:
        """Run a saga to its end and return its outcome.

        Sagas are idempotent by id: an exact repeat (same tenant, saga name and initial
        data) of a finished saga id returns its stored outcome; of an unfinished one whose
        worker died, resumes it. Saga ids are unique across tenants: an id already used
        otherwise is refused, and nothing of the saga that has it is returned.

        Returns:
            ``{"saga_id", "saga_name", "status", "step_results", "error", "failed_step",
            "compensated_steps"}``.

        Raises:
            SagaDefinitionError: Unknown saga name.
            InvalidInputError: ``initial_data`` is not a JSON object (or is too large).
            SagaConflictError: The id is already used by another tenant, by another saga or
                with other initial data (``metadata["reason"]``: ``tenant``, ``saga_name``,
                ``initial_data``).
            SagaError: Another live worker runs the saga.
        """
        return await (await self._begin(saga_name, context, initial_data))

    async def start_saga(
        self,
        saga_name: str,
        context: SagaContext,
        initial_data: Mapping[str, Any] | None = None,
    ) -> str:
        """Start a saga; return its id once its record is committed, and run it in the background.

        The saga runs on a task this coordinator keeps: :meth:`wait` gives its outcome,
        :meth:`aclose` finishes or cancels every such task. If this process dies, another
        worker resumes the saga once its lease expires (see :meth:`recover`), as for
        :meth:`execute_saga`. The same rules as :meth:`execute_saga` apply to the id (an
        exact repeat of a finished saga starts nothing; its outcome is kept for
        :meth:`wait`), and the same errors are raised, before this returns.

        Returns:
            The saga id (``context.saga_id``).

        Raises:
            SagaDefinitionError: Unknown saga name.
            InvalidInputError: ``initial_data`` is not a JSON object (or is too large).
            SagaConflictError: The id is already used otherwise (see :meth:`execute_saga`).
            SagaError: Another live worker runs the saga, or this coordinator already does.
        """
        saga_id = context.saga_id if isinstance(context, SagaContext) else None
        if saga_id is not None and saga_id in self._background:
            raise SagaError(
                f"saga {saga_id} is already running in the background here",
                saga_id=saga_id,
                saga_name=saga_name,
            )
        run = await self._begin(saga_name, context, initial_data)
        task = asyncio.get_running_loop().create_task(run, name=f"saga:{context.saga_id}")
        self._background[context.saga_id] = (task, context.tenant_id)
        task.add_done_callback(self._started_done)
        return context.saga_id

    def _started_done(self, task: asyncio.Task[SagaResult]) -> None:
        """A background saga ended: release what it held; log a failure nobody may read."""
        saga_id = task.get_name().removeprefix("saga:")
        self._driving.discard(saga_id)  # its drive may have been cancelled before it began
        if task.cancelled():
            return
        error = task.exception()  # retrieved here; wait() raises it again
        if error is not None:
            logger.error("background saga %s stopped: %s", saga_id, describe(error))

    async def wait(self, saga_id: str, *, tenant_id: TenantScope) -> SagaResult:
        """The outcome of a saga: when it ends, if :meth:`start_saga` runs it here, else now.

        Args:
            saga_id: The saga's id.
            tenant_id: The tenant the saga belongs to (as for :meth:`get_saga`).

        Raises:
            SagaNotFoundError: No saga of ``tenant_id`` has that id.
            SagaLeaseLostError: The background run lost its lease (another worker goes on).
            asyncio.CancelledError: The background run was cancelled (:meth:`aclose`).
        """
        scope = tenant_scope(tenant_id)
        started = self._background.get(saga_id)
        if started is not None and (scope is ALL_TENANTS or scope == started[1]):
            task = started[0]
            try:
                return await asyncio.shield(task)
            finally:
                if task.done():
                    self._background.pop(saga_id, None)
        return await self.get_saga(saga_id, tenant_id=scope)

    async def aclose(self, timeout: float | None = 0.0) -> None:
        """Finish or cancel every saga :meth:`start_saga` runs here.

        Args:
            timeout: Seconds to let them finish (None: as long as they take); the rest are
                cancelled. A cancelled saga keeps its lease until it expires, then another
                worker resumes it (its state is durable at every step boundary).
        """
        tasks = [task for task, _ in self._background.values()]
        self._background.clear()
        if not tasks:
            return
        if timeout is None or timeout > 0:
            await asyncio.wait(tasks, timeout=timeout)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _begin(
        self,
        saga_name: str,
        context: SagaContext,
        initial_data: Mapping[str, Any] | None,
    ) -> Coroutine[Any, Any, SagaResult]:
        """Everything of :meth:`execute_saga` before its steps run; the run itself after.

        The saga's record is committed (or its existing record checked and its lease taken)
        when this returns; awaiting the returned coroutine drives the saga to its end.
        """
        definition = self._definition(saga_name)
        if not isinstance(context, SagaContext):
            raise InvalidInputError("context must be a SagaContext", field="context")
        if context.tenant_id is not None and not isinstance(context.tenant_id, str):
            raise InvalidInputError(
                "context.tenant_id must be a tenant id (str) or None", field="tenant_id"
            )
        data = json_object(initial_data, "initial_data", "initial_data")
        now = self.clock.now()
        record = SagaRecord(
            saga_id=context.saga_id,
            saga_name=definition.name,
            saga_version=definition.version,
            status=SagaStatus.RUNNING,
            initial_data=data,
            context=json_object(context.to_dict(), "context", "context"),
            tenant_id=context.tenant_id,
            user_id=context.user_id,
            correlation_id=context.correlation_id,
            deadline_at=now + dt.timedelta(seconds=definition.timeout)
            if definition.timeout
            else None,
            created_at=now,
        )
        # One commit for "saga started" and "step 1 started": both are durable before step 1
        # runs. If the id exists already, neither is written.
        started = decide(record, definition, Begin(), now)
        record = started.record
        leased_at = asyncio.get_running_loop().time()
        moves = ((None, SagaStatus.RUNNING), *started.moves)  # the saga itself is new
        events = transitions(record, moves, now, worker=self.owner_id)
        if await self._store.create(
            record, self.owner_id, self.lease_seconds, started.steps, events
        ):
            self._driving.add(record.saga_id)
            return self._drive(record, definition, first_started=True, leased_at=leased_at)
        # The id is taken. Read it within the caller's tenant only: another tenant's saga is
        # never loaded, so nothing of it (its steps' results above all) can leak out.
        existing = await self._store.load(context.saga_id, tenant_id=context.tenant_id)
        if existing is None:
            raise SagaConflictError(
                f"saga id {context.saga_id!r} is already in use; choose another id",
                saga_id=context.saga_id,
                saga_name=saga_name,
                tenant_id=context.tenant_id,
                metadata={"reason": "tenant"},
            )
        if existing.saga_name != saga_name:
            raise SagaConflictError(
                f"saga id {context.saga_id} belongs to a {existing.saga_name} saga",
                saga_id=context.saga_id,
                saga_name=saga_name,
                tenant_id=context.tenant_id,
                metadata={"reason": "saga_name"},
            )
        if not same_data(existing.initial_data, data):
            raise SagaConflictError(
                f"saga id {context.saga_id} was started with other initial data",
                saga_id=context.saga_id,
                saga_name=saga_name,
                tenant_id=context.tenant_id,
                metadata={"reason": "initial_data"},
            )
        if not existing.status.is_active:
            return _ready(self._outcome(existing))
        return await self._take_over(existing)

    async def resume_saga(self, saga_id: str, *, tenant_id: TenantScope) -> SagaResult:
        """Drive an unfinished saga on (its lease must be free or expired).

        A saga in ``compensation_failed`` is compensated again: the operator resumes it
        after fixing what made the compensation fail. A finished saga's outcome is returned
        as stored.

        Args:
            saga_id: The saga's id.
            tenant_id: The tenant the saga belongs to; ``None`` for a saga started without
                one; :data:`ALL_TENANTS` to act whatever its tenant (operators).

        Raises:
            SagaNotFoundError: No saga of ``tenant_id`` has that id.
            SagaDefinitionError: The saga's type is not registered here; nothing changed.
            SagaError: Another live worker runs the saga.
        """
        record = await self._require(saga_id, tenant_id=tenant_id)
        if record.status is SagaStatus.COMPENSATION_FAILED:
            return await self._repair(record, "resume", operator=None, reason=None)
        if not record.status.is_active:
            return self._outcome(record)
        self._definition(record.saga_name)  # refuse before taking the lease
        return await (await self._take_over(record))

    async def cancel_saga(
        self,
        saga_id: str,
        *,
        tenant_id: TenantScope,
        operator: str | None = None,
        reason: str | None = None,
    ) -> SagaResult:
        """Stop a running saga and compensate what it did.

        If another live worker drives it, that worker compensates at its next step boundary
        and this returns the saga as it is now; otherwise this call compensates it. A
        finished saga's outcome is returned as stored. The request is recorded in the
        saga's history (``action.cancel``, with ``operator`` and ``reason`` if given) in the
        same transaction as the cancel flag.

        Args:
            saga_id: The saga's id.
            tenant_id: The tenant the saga belongs to; ``None`` for a saga started without
                one; :data:`ALL_TENANTS` to act whatever its tenant (operators).
            operator: Who cancels (recorded in the history).
            reason: Why (recorded in the history).

        Raises:
            SagaNotFoundError: No saga of ``tenant_id`` has that id.
            SagaDefinitionError: The saga's type is not registered here; nothing changed.
            SagaRepairRefusedError: The saga is past its pivot step (or in ``incident``):
                it can only go forward; nothing changed.
        """
        record = await self._require(saga_id, tenant_id=tenant_id)
        if record.status is SagaStatus.INCIDENT:
            _repair.refuse_cancel(record, self._definition(record.saga_name))
        if not record.status.is_active:
            return self._outcome(record)
        definition = self._definition(record.saga_name)  # refuse before changing anything
        _repair.refuse_cancel(record, definition)
        _check_who("cancel", operator, reason, required=False)
        event = SagaEvent(
            kind="action.cancel",
            occurred_at=self.clock.now(),
            worker=self.owner_id,
            operator=operator,
            reason=reason,
        )
        if not await self._store.request_cancel(saga_id, tenant_id=record.tenant_id, event=event):
            return self._outcome(await self._require(saga_id, tenant_id=record.tenant_id))
        if saga_id in self._driving or not await self._store.acquire(
            saga_id, self.owner_id, self.lease_seconds
        ):
            return self._outcome(await self._require(saga_id, tenant_id=record.tenant_id))
        # Read again now that the lease is ours: the state this worker drives on is the
        # latest one (the previous owner may have written until its lease ran out).
        record = await self._require(saga_id, tenant_id=record.tenant_id)
        return await self._drive(record, definition)

    async def get_saga(self, saga_id: str, *, tenant_id: TenantScope) -> SagaResult:
        """The saga's full record: status, data, every step, lease and times.

        Args:
            saga_id: The saga's id.
            tenant_id: The tenant the saga belongs to; ``None`` for a saga started without
                one; :data:`ALL_TENANTS` to read it whatever its tenant (operators).

        Raises:
            SagaNotFoundError: No saga of ``tenant_id`` has that id (another tenant's saga
                is reported exactly like a missing one).
        """
        record = await self._require(saga_id, tenant_id=tenant_id)
        return await self._with_history(self._outcome(record))

    async def saga_history(
        self,
        saga_id: str,
        *,
        tenant_id: TenantScope,
        after: int | None = None,
        limit: int = 100,
    ) -> tuple[SagaEvent, ...]:
        """A page of the saga's history, oldest first (for a console that pages it).

        Args:
            saga_id: The saga's id.
            tenant_id: The tenant the saga belongs to (as for :meth:`get_saga`).
            after: The ``sequence`` of the last entry already seen (None: from the start).
            limit: At most this many entries.

        Raises:
            SagaNotFoundError: No saga of ``tenant_id`` has that id.
            InvalidInputError: A limit below 1 or an ``after`` that is not an integer.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInputError("limit must be a positive integer", field="limit")
        if after is not None and (isinstance(after, bool) or not isinstance(after, int)):
            raise InvalidInputError("after must be an entry's sequence number", field="after")
        await self._require(saga_id, tenant_id=tenant_id)
        scope = tenant_scope(tenant_id)
        return tuple(await self._store.history(saga_id, tenant_id=scope, after=after, limit=limit))

    # --- repair actions (an operator moves a stopped saga on) ---------------------------

    async def retry_compensation(
        self, saga_id: str, *, tenant_id: TenantScope, operator: str, reason: str
    ) -> SagaResult:
        """Run the failed compensation of a ``compensation_failed`` saga again, and go on.

        For when the cause was fixed. Recorded in the history (``action.retry_compensation``)
        with ``operator`` and ``reason``, in the transaction that moves the saga back to
        ``compensating``; the compensation then runs here.

        Raises:
            SagaNotFoundError: No saga of ``tenant_id`` has that id.
            InvalidInputError: A blank ``operator`` or ``reason``.
            SagaRepairRefusedError: The saga is not in ``compensation_failed``, or changed
                while this ran; nothing changed.
            SagaDefinitionError: Its type is not registered here; nothing changed.
        """
        record = await self._require(saga_id, tenant_id=tenant_id)
        return await self._repair(record, "retry_compensation", operator=operator, reason=reason)

    async def mark_step_compensated(
        self,
        saga_id: str,
        step_name: str,
        *,
        tenant_id: TenantScope,
        operator: str,
        reason: str,
    ) -> SagaResult:
        """Mark the stuck step of a ``compensation_failed`` saga compensated by hand; go on.

        For when a person undid the step outside. The step becomes ``compensated`` (its
        compensation does not run), the saga ``compensating``, and the steps before it are
        compensated here; recorded with ``operator`` and ``reason``.

        Raises:
            SagaNotFoundError: No saga of ``tenant_id`` has that id.
            InvalidInputError: A blank ``operator`` or ``reason``.
            SagaRepairRefusedError: The saga is not in ``compensation_failed``, the step is
                unknown or not the one whose compensation failed, or the saga changed while
                this ran; nothing changed.
        """
        record = await self._require(saga_id, tenant_id=tenant_id)
        return await self._repair(
            record, "mark_step_compensated", operator=operator, reason=reason, step_name=step_name
        )

    async def retry_step(
        self, saga_id: str, *, tenant_id: TenantScope, operator: str, reason: str
    ) -> SagaResult:
        """Run the exhausted step of a saga in ``incident`` again, and go forward.

        For a step past the pivot whose retries ran out, once the cause was fixed. The step
        is started again (its try counted, with its full retry budget) and the saga driven
        on here; recorded with ``operator`` and ``reason``.

        Raises:
            SagaNotFoundError: No saga of ``tenant_id`` has that id.
            InvalidInputError: A blank ``operator`` or ``reason``.
            SagaRepairRefusedError: The saga is not in ``incident``, or changed while this
                ran; nothing changed.
        """
        record = await self._require(saga_id, tenant_id=tenant_id)
        return await self._repair(record, "retry_step", operator=operator, reason=reason)

    async def resolve_incident(
        self,
        saga_id: str,
        *,
        tenant_id: TenantScope,
        operator: str,
        reason: str,
        output: Mapping[str, Any] | None = None,
    ) -> SagaResult:
        """Close a saga's incident: a person finished its exhausted step outside.

        The step is marked ``completed`` with ``output`` as its result (what the steps after
        it see), and the saga goes forward from the next step here (a later step may stop it
        in ``incident`` again). Recorded with ``operator``, ``reason`` and the output.

        Raises:
            SagaNotFoundError: No saga of ``tenant_id`` has that id.
            InvalidInputError: A blank ``operator`` or ``reason``, or an ``output`` that
                cannot be stored as a step result.
            SagaRepairRefusedError: The saga is not in ``incident``, or changed while this
                ran; nothing changed.
        """
        record = await self._require(saga_id, tenant_id=tenant_id)
        return await self._repair(
            record, "resolve_incident", operator=operator, reason=reason, output=output
        )

    async def _repair(
        self,
        record: SagaRecord,
        action: _repair.RepairAction,
        *,
        operator: str | None,
        reason: str | None,
        step_name: str | None = None,
        output: Mapping[str, Any] | None = None,
    ) -> SagaResult:
        """Plan ``action``, commit it with its history atomically (fenced), drive the saga on."""
        if action != "resume":
            _check_who(action, operator, reason, required=True)
        _repair.check_status(record, action, step_name)
        definition = self._definition(record.saga_name)  # refuse before changing anything
        now = self.clock.now()
        saga, steps, moves = _repair.plan(
            record, definition, action, now, step_name=step_name, output=output
        )
        resolved = steps[0].result if action == "resolve_incident" and steps else None
        events = [
            SagaEvent(
                kind=f"action.{action}",
                occurred_at=now,
                step=steps[0].name if steps else None,
                worker=self.owner_id,
                operator=operator,
                reason=reason,
                data={"output": resolved} if resolved is not None else None,
            ),
            *transitions(saga, moves, now, worker=self.owner_id, operator=operator, reason=reason),
        ]
        leased_at = asyncio.get_running_loop().time()
        if not await self._store.repair(
            saga,
            steps,
            events,
            expected=(record.status, record.updated_at),
            owner=self.owner_id,
            lease_seconds=self.lease_seconds,
            tenant_id=record.tenant_id,
        ):
            raise SagaRepairRefusedError(
                f"saga {record.saga_id} changed while {action} was being applied; "
                "read it again and decide anew",
                saga_id=record.saga_id,
                saga_name=record.saga_name,
                tenant_id=record.tenant_id,
                action=action,
                status=record.status.value,
                step=step_name,
                reason="changed_meanwhile",
            )
        result = await self._drive(
            saga, definition, first_started=action == "retry_step", leased_at=leased_at
        )
        return await self._with_history(result)

    async def _with_history(self, result: SagaResult) -> SagaResult:
        """``result`` with the saga's whole history."""
        history = await self._store.history(result.saga_id, tenant_id=result.tenant_id)
        return dataclasses.replace(result, history=tuple(history))

    async def list_sagas(
        self,
        *,
        tenant_id: TenantScope,
        status: SagaStatus | str | None = None,
        limit: int = 100,
        saga_name: str | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
    ) -> list[SagaSummary]:
        """Sagas of one tenant (or of all), newest first, optionally filtered.

        The first page of :meth:`page_sagas` (which pages on with a cursor), as a list.

        Args:
            tenant_id: Whose sagas: a tenant id, ``None`` for the sagas started without a
                tenant, or :data:`ALL_TENANTS` for every tenant's (operators).
            status: Only sagas in this status.
            limit: At most this many.
            saga_name: Only sagas of this type.
            created_after: Only sagas created at or after this time (timezone-aware).
            created_before: Only sagas created before this time (timezone-aware).

        Raises:
            InvalidInputError: Unknown status, a ``tenant_id`` of the wrong type, a naive
                time, or a limit below 1.
        """
        page = await self.page_sagas(
            tenant_id=tenant_id,
            status=status,
            limit=limit,
            saga_name=saga_name,
            created_after=created_after,
            created_before=created_before,
        )
        return list(page.items)

    async def page_sagas(
        self,
        *,
        tenant_id: TenantScope,
        saga_name: str | None = None,
        status: SagaStatus | str | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SagaPage:
        """One page of a tenant's (or every tenant's) sagas, newest first, optionally filtered.

        Sagas are ordered by creation time, then id (both descending), so a page that starts
        at ``cursor`` goes on exactly where the previous one stopped: following
        ``next_cursor`` with the same filters returns every matching saga once, however many
        share a creation time. Sagas created meanwhile are newer than the first page and do
        not shift later pages.

        Args:
            tenant_id: Whose sagas: a tenant id, ``None`` for the sagas started without a
                tenant, or :data:`ALL_TENANTS` for every tenant's (operators).
            saga_name: Only sagas of this type.
            status: Only sagas in this status.
            created_after: Only sagas created at or after this time (timezone-aware).
            created_before: Only sagas created before this time (timezone-aware).
            limit: At most this many sagas per page.
            cursor: The ``next_cursor`` of the previous page (None: the first page).

        Returns:
            The page's sagas and the cursor of the next page (``None`` on the last page).

        Raises:
            InvalidInputError: A malformed cursor (field ``cursor``), an unknown status, a
                naive time, a limit below 1, or a ``tenant_id`` of the wrong type.

        Example:
            >>> page = await coordinator.page_sagas(tenant_id="tenant123")  # doctest: +SKIP
            >>> while page.next_cursor:  # doctest: +SKIP
            ...     page = await coordinator.page_sagas(
            ...         tenant_id="tenant123", cursor=page.next_cursor
            ...     )
        """
        scope = tenant_scope(tenant_id)
        wanted = _status_filter(status)
        if saga_name is not None and not isinstance(saga_name, str):
            raise InvalidInputError("saga_name must be a string", field="saga_name")
        for field, bound in (("created_after", created_after), ("created_before", created_before)):
            if bound is not None and (not isinstance(bound, dt.datetime) or bound.tzinfo is None):
                raise InvalidInputError(
                    f"{field} must be a timezone-aware datetime (e.g. UTC)", field=field
                )
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInputError("limit must be a positive integer", field="limit")
        after = decode_cursor(cursor) if cursor is not None else None
        # One more than the page: whether it exists says if there is a next page.
        records = await self._store.page(
            tenant_id=scope,
            limit=limit + 1,
            saga_name=saga_name,
            status=wanted,
            created_after=created_after,
            created_before=created_before,
            after=after,
        )
        shown = records[:limit]
        last = shown[-1] if shown else None
        next_cursor = (
            encode_cursor(last.created_at, last.saga_id)
            if len(records) > limit and last is not None and last.created_at is not None
            else None
        )
        return SagaPage(items=tuple(_summary(r) for r in shown), next_cursor=next_cursor)

    async def recover(self, limit: int = 20) -> int:
        """One recovery pass: take over sagas whose lease expired and drive them on.

        Returns how many sagas this pass took up. Safe to run from many workers at once:
        each saga is claimed by exactly one, and only by a worker that has its definition
        registered (a worker never holds the lease of a saga it cannot run).
        """
        leased_at = asyncio.get_running_loop().time()
        claimed = await self._store.claim_expired(
            self.owner_id, self.lease_seconds, limit, saga_names=tuple(self._definitions)
        )
        records = [await self._store.load(s, tenant_id=ALL_TENANTS) for s in claimed]
        # Claimed rows are never deleted; a saga's type never changes.
        runnable = [record for record in records if record is not None]
        outcomes = await asyncio.gather(
            *(
                self._drive(r, self._definitions[r.saga_name], leased_at=leased_at)
                for r in runnable
            ),
            return_exceptions=True,
        )
        # One saga's failure (say, the database went away mid-way) must not hide the others':
        # each is logged; an unfinished saga's lease expires and a later pass takes it again.
        for record, outcome in zip(runnable, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                logger.error(
                    "recovery of saga %s stopped: %s",
                    record.saga_id,
                    describe(outcome),
                    exc_info=outcome,
                )
        return len(runnable)

    # --- the engine -------------------------------------------------------------------

    async def _require(self, saga_id: str, *, tenant_id: TenantScope) -> SagaRecord:
        """The saga of ``tenant_id`` with that id; another tenant's is reported as missing."""
        record = await self._store.load(saga_id, tenant_id=tenant_scope(tenant_id))
        if record is None:
            raise SagaNotFoundError(f"no saga with id {saga_id!r}", saga_id=saga_id)
        return record

    async def _take_over(self, record: SagaRecord) -> Coroutine[Any, Any, SagaResult]:
        """Take the lease of an unfinished saga; the coroutine that drives it on."""
        leased_at = asyncio.get_running_loop().time()
        if record.saga_id in self._driving or not await self._store.acquire(
            record.saga_id, self.owner_id, self.lease_seconds
        ):
            raise SagaError(
                f"saga {record.saga_id} is being run by another worker "
                f"(lease until {record.lease_expires_at})",
                saga_id=record.saga_id,
                saga_name=record.saga_name,
                metadata={"lease_owner": record.lease_owner},
            )
        self._driving.add(record.saga_id)
        return self._drive(record, self._definition(record.saga_name), leased_at=leased_at)

    async def _drive(
        self,
        record: SagaRecord,
        definition: SagaDefinition,
        *,
        first_started: bool = False,
        leased_at: float | None = None,
    ) -> SagaResult:
        """Run the saga on while holding its lease; its outcome when it ends.

        ``leased_at``: loop time just before the lease was written (now by default).
        """
        lease = self._leases.hold(record.saga_id, leased_at)
        self._driving.add(record.saga_id)
        try:
            with (
                log_context(tenant_id=record.tenant_id, saga_id=record.saga_id),
                start_span(
                    "saga.execute",
                    {
                        "dotmac.saga.name": record.saga_name,
                        "dotmac.saga.id": record.saga_id,
                        "dotmac.tenant.id": record.tenant_id or "",
                    },
                ) as span,
            ):
                record = await self._leases.run(
                    record, lease, self._run(record, definition, first_started)
                )
                span.set_attribute("dotmac.saga.status", record.status.value)
                if record.status is not SagaStatus.COMPLETED:
                    failure = record.error
                    if failure is not None:
                        # The stable code as an attribute to filter on; the words as status.
                        span.set_attribute("dotmac.error.code", failure.code)
                    span.set_status(
                        Status(StatusCode.ERROR, failure.message if failure is not None else "")
                    )
            SAGA_FINISHED.add(1, {"saga": record.saga_name, "status": record.status.value})
            return self._outcome(record)
        except SagaLeaseLostError as exc:
            reread = functools.partial(self._require, record.saga_id, tenant_id=record.tenant_id)
            return self._outcome(await self._leases.after_lost(record, exc, reread))
        finally:
            self._driving.discard(record.saga_id)
            self._leases.release(record.saga_id)

    async def _run(
        self, record: SagaRecord, definition: SagaDefinition, first_started: bool
    ) -> SagaRecord:
        """The loop: ask :func:`decide`, commit its state change, act, repeat; the end record.

        Every state change is committed before its action runs, so any worker can go on
        from the stored state.
        """
        decision = decide(record, definition, Begin(first_started), self.clock.now())
        while True:
            record, action = decision.record, decision.action
            cancel = False
            if decision.write:
                events = transitions(record, decision.moves, self.clock.now(), worker=self.owner_id)
                cancel = await self._leases.save(record, decision.steps, events)
            event: Event
            if isinstance(action, RunStep):
                if cancel:  # the commit that started the step said "cancel": it has not begun
                    event = CancelRequested(action.index)
                else:
                    event = await _acts.execute(
                        record,
                        definition,
                        action.index,
                        session_factory=self.session_factory,
                        clock=self.clock,
                    )
            elif isinstance(action, Compensate):
                event = await _acts.compensate(
                    record,
                    definition,
                    action.index,
                    session_factory=self.session_factory,
                    save=self._leases.save,
                )
            else:  # Finish, Stop
                return record
            decision = decide(record, definition, event, self.clock.now())

    @staticmethod
    def _outcome(record: SagaRecord) -> SagaResult:
        return saga_result(record)


#: Longest operator name and reason recorded in a saga's history.
MAX_OPERATOR_CHARS, MAX_REASON_CHARS = 255, 2000


def _check_who(action: str, operator: str | None, reason: str | None, *, required: bool) -> None:
    """Refuse an operator or reason the history cannot record (or a missing one if required).

    Raises:
        InvalidInputError: Blank when required, not a string, too long, or holding a NUL
            character (``field``: ``operator`` or ``reason``).
    """
    for field, value, limit in (
        ("operator", operator, MAX_OPERATOR_CHARS),
        ("reason", reason, MAX_REASON_CHARS),
    ):
        if value is None and not required:
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(
                f"{action} needs a non-blank {field} (recorded in the saga's history)",
                field=field,
            )
        if len(value) > limit or "\x00" in value:
            raise InvalidInputError(
                f"{action}: {field} must be at most {limit} characters, without NUL",
                field=field,
            )


def _status_filter(status: SagaStatus | str | None) -> SagaStatus | None:
    """``status`` as a :class:`SagaStatus` (None: any status).

    Raises:
        InvalidInputError: Not a saga status.
    """
    if status is None:
        return None
    try:
        return SagaStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in SagaStatus)
        raise InvalidInputError(
            f"unknown saga status {status!r}; expected one of: {known}", field="status"
        ) from None


def _summary(record: SagaRecord) -> SagaSummary:
    """The list row of a stored saga."""
    return SagaSummary(
        saga_id=record.saga_id,
        saga_name=record.saga_name,
        status=record.status,
        tenant_id=record.tenant_id,
        error=record.error,
        failed_step=record.failed_step,
        created_at=record.created_at,
        updated_at=record.updated_at,
        completed_at=record.completed_at,
    )


async def _ready(result: SagaResult) -> SagaResult:
    """``result``, as a coroutine (the run of a saga that has ended already)."""
    return result
