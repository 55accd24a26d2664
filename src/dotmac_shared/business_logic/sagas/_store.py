"""Durable saga state behind a ``Protocol``, and its SQL implementation for both databases.

The store writes what the coordinator decided; the state machine lives in ``states.py``.
Every write that belongs to a running saga is fenced by the lease: it only lands if the
writer still owns the saga, so a worker that stalled past its lease cannot overwrite the
progress of the worker that took over (it gets :class:`SagaLeaseLostError` and stops).

Reads and lease updates are single statements on SQLAlchemy Core, built once with bind
parameters (each call only binds values and hits the compiled cache), in autocommit mode.

State changes (a new saga, or a saga row plus its step rows) are the hot path: one per step.
They are group-committed: the changes of every saga submitted while a batch is being written
go together in the next batch. On PostgreSQL a batch is one statement (data-modifying CTEs
over unnested arrays; one round trip, one commit); on SQLite it is one ``BEGIN IMMEDIATE``
transaction of at most three statements: on the event loop's thread when the batch is small
and nothing would wait, else whole in one trip to a worker thread (see
``sqlite_driver.run_transaction``). A saga alone is written as a batch of one. Either way each
saga's change is atomic and fenced on its own: one saga's lost lease (or bad data) does not
stop the others' changes in the same batch.

Every database, driver or network error that leaves a public method is a
:class:`PersistenceError` with the original chained (``persistence.driver.persistence_errors``,
applied where the store reaches the database). Every wall time the store writes or compares
(leases, ``updated_at``) comes from its injected :class:`Clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any, Literal, Protocol, TypeVar, cast

from sqlalchemy import ColumnElement, Dialect, Executable, Table, bindparam, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import Select, Update

from dotmac_shared.business_logic.clock import Clock, as_clock
from dotmac_shared.business_logic.exceptions import PersistenceError, SagaLeaseLostError
from dotmac_shared.business_logic.persistence.driver import (
    driver_connection,
    persistence_errors,
)
from dotmac_shared.business_logic.persistence.models import SagaExecution, SagaStepExecution
from dotmac_shared.business_logic.persistence.session import autocommit, engine_of
from dotmac_shared.business_logic.persistence.sqlite_driver import run_transaction
from dotmac_shared.business_logic.sagas._scope import ALL_TENANTS, TenantScope, tenant_scope
from dotmac_shared.business_logic.sagas._states import SagaStatus, StepStatus

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

    async def create(
        self,
        record: SagaRecord,
        owner: str,
        lease_seconds: float,
        steps: Sequence[StepRecord] = (),
    ) -> bool:
        """Insert a new saga owned by ``owner``, with ``steps``, in one transaction.

        Returns False (and writes nothing) if the id exists already.
        """
        ...

    async def load(self, saga_id: str, *, tenant_id: TenantScope) -> SagaRecord | None:
        """Return the saga with its steps, or None if it is missing or outside ``tenant_id``.

        The tenant is a condition of the query: another tenant's saga is never read.
        """
        ...

    async def acquire(self, saga_id: str, owner: str, lease_seconds: float) -> bool:
        """Take the lease of an active saga if it is free, expired or ours already."""
        ...

    async def renew(self, saga_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend ``owner``'s lease; False if it was lost."""
        ...

    async def reopen(
        self, saga_id: str, owner: str, lease_seconds: float, *, tenant_id: TenantScope
    ) -> bool:
        """Move a ``compensation_failed`` saga of ``tenant_id`` back to ``compensating``.

        The saga is leased to ``owner``; False (nothing changed) if no such saga is in
        ``compensation_failed``.
        """
        ...

    async def save(self, record: SagaRecord, steps: Sequence[StepRecord], owner: str) -> bool:
        """Write the saga row and ``steps`` in one transaction, fenced by the lease.

        Returns whether a cancel was requested.
        """
        ...

    async def request_cancel(self, saga_id: str, *, tenant_id: TenantScope) -> bool:
        """Flag an active saga of ``tenant_id`` for cancellation; False if there is none."""
        ...

    async def claim_expired(
        self,
        owner: str,
        lease_seconds: float,
        limit: int,
        *,
        saga_names: Collection[str] | None = None,
    ) -> list[str]:
        """Take over up to ``limit`` active sagas whose lease expired; return their ids.

        With ``saga_names``, only sagas of those types: a worker never takes a saga it cannot
        run (its lease would keep a worker that can from it until it expired again).
        """
        ...

    async def list(
        self, *, tenant_id: TenantScope, status: SagaStatus | None, limit: int
    ) -> list[SagaRecord]:
        """Sagas of ``tenant_id``, newest first, optionally of one status (steps not loaded)."""
        ...


_SAGAS = cast(Table, SagaExecution.__table__)
_STEPS = cast(Table, SagaStepExecution.__table__)
_S = _SAGAS.c
_T = _STEPS.c

# --- single statements (leases, reads), built once with bind parameters ---------------------
# The hot path only binds values, so SQLAlchemy's compiled cache is hit every time.


def _bind(name: str, column: ColumnElement[Any]) -> BindParameter[Any]:
    """A bind parameter typed like ``column`` (so its type's bind processing applies)."""
    return bindparam(name, type_=column.type)


_OWNED = _S.lease_owner == _bind("w_owner", _S.lease_owner)
_THIS_SAGA = _S.saga_id == _bind("w_saga_id", _S.saga_id)
_IS_ACTIVE = _S.status.in_(_ACTIVE)
_NEW_LEASE = {
    "lease_owner": _bind("v_lease_owner", _S.lease_owner),
    "lease_expires_at": _bind("v_lease_expires_at", _S.lease_expires_at),
}

_ACQUIRE = (
    update(_SAGAS)
    .where(_THIS_SAGA, _IS_ACTIVE)
    .where(
        or_(
            _S.lease_owner.is_(None),
            _OWNED,
            _S.lease_expires_at < _bind("w_now", _S.lease_expires_at),
        )
    )
    .values(_NEW_LEASE)
)
_RENEW = (
    update(_SAGAS)
    .where(_THIS_SAGA, _OWNED)
    .values(lease_expires_at=_bind("v_lease_expires_at", _S.lease_expires_at))
)

# --- tenant scopes ------------------------------------------------------------------------
# Every read and operator action is filtered by tenant in its SQL: each statement exists
# once per kind of scope, one tenant ("one", bound as w_tenant), no tenant ("none") or all.
_ScopeKind = Literal["all", "none", "one"]
_SCOPES: tuple[_ScopeKind, ...] = ("all", "none", "one")
_Scopable = TypeVar("_Scopable", Select[Any], Update)


def _scope_kind(tenant_id: TenantScope) -> _ScopeKind:
    if tenant_id is ALL_TENANTS:
        return "all"
    return "none" if tenant_id is None else "one"


def _scoped(statement: _Scopable, kind: _ScopeKind) -> _Scopable:
    """``statement`` restricted to the sagas of one kind of scope."""
    if kind == "one":
        return statement.where(_S.tenant_id == _bind("w_tenant", _S.tenant_id))
    if kind == "none":
        return statement.where(_S.tenant_id.is_(None))
    return statement


def _scope_params(
    tenant_id: TenantScope, params: dict[str, Any]
) -> tuple[_ScopeKind, dict[str, Any]]:
    """The kind of ``tenant_id``'s scope, and ``params`` with its bind value added."""
    kind = _scope_kind(tenant_scope(tenant_id))
    if kind == "one":
        params["w_tenant"] = tenant_id
    return kind, params


_REOPEN = {
    kind: _scoped(
        update(_SAGAS)
        .where(_THIS_SAGA, _S.status == SagaStatus.COMPENSATION_FAILED.value)
        .values(status=SagaStatus.COMPENSATING.value, completed_at=None, **_NEW_LEASE),
        kind,
    )
    for kind in _SCOPES
}
_REQUEST_CANCEL = {
    kind: _scoped(update(_SAGAS).where(_THIS_SAGA, _IS_ACTIVE).values(cancel_requested=True), kind)
    for kind in _SCOPES
}
_CANDIDATES = (
    select(_S.saga_id, _S.lease_owner)
    .where(_IS_ACTIVE, _S.lease_expires_at < _bind("w_now", _S.lease_expires_at))
    .order_by(_S.lease_expires_at)
    .limit(_bind("w_limit", _S.current_step))
    .with_for_update(skip_locked=True)
)
_CANDIDATES_OF_TYPES = _CANDIDATES.where(_S.saga_name.in_(bindparam("w_names", expanding=True)))
_CLAIM_EXPIRED = (
    update(_SAGAS)
    .where(_THIS_SAGA, _IS_ACTIVE, _S.lease_expires_at < _bind("w_now", _S.lease_expires_at))
    .values(_NEW_LEASE)
)
_CLAIM_ORPHAN = _CLAIM_EXPIRED.where(_S.lease_owner.is_(None))
_CLAIM_FROM = _CLAIM_EXPIRED.where(_S.lease_owner == _bind("w_previous", _S.lease_owner))

# One statement reads the saga and its steps (a consistent snapshot, one round trip).
_STEP_LABELS = {c.name: f"step_{c.name}" for c in _STEPS.columns if c.name != "saga_id"}
_LOAD = {
    kind: _scoped(
        select(_SAGAS, *(_T[name].label(label) for name, label in _STEP_LABELS.items()))
        .select_from(_SAGAS.outerjoin(_STEPS, _T.saga_id == _S.saga_id))
        .where(_THIS_SAGA)
        .order_by(_T.step_index),
        kind,
    )
    for kind in _SCOPES
}


def _list_statement(kind: _ScopeKind, by_status: bool) -> Executable:
    query = select(_SAGAS).order_by(_S.created_at.desc()).limit(_bind("w_limit", _S.current_step))
    query = _scoped(query, kind)
    if by_status:
        query = query.where(_S.status == _bind("w_status", _S.status))
    return query


_LIST = {(k, s): _list_statement(k, s) for k in _SCOPES for s in (False, True)}

# --- state changes: group commit ------------------------------------------------------------
# Creating a saga and saving a state change are the hot path (one per step). Each is one
# atomic write per saga; writes submitted while another batch is being written go together in
# the next one (group commit), so many sagas in flight share round trips and commits. A saga
# alone gets a batch of one, written at once. Values are encoded by the columns' own types.

#: A new saga row, in this order (``cancel_requested`` is false, ``updated_at`` is created_at).
_NEW = (
    "saga_id",
    "saga_name",
    "saga_version",
    "tenant_id",
    "user_id",
    "correlation_id",
    "status",
    "current_step",
    "initial_data",
    "context",
    "lease_owner",
    "lease_expires_at",
    "deadline_at",
    "created_at",
)
#: A state change of a saga row: key, fence (lease owner), new values, and whether it is final
#: (then the lease is released: nobody owns a finished saga).
_CHANGE = (
    "saga_id",
    "lease_owner",
    "status",
    "current_step",
    "error",
    "failed_step",
    "completed_at",
    "updated_at",
)
#: A step row; ``(saga_id, step_name)`` is its key.
_STEP = tuple(c.name for c in _STEPS.columns)
#: Most changes written in one batch (the rest wait for the next).
_MAX_BATCH = 256
#: Largest SQLite batch that may be written on the event loop's thread (see
#: ``sqlite_driver.transaction``): a few changes take tens of microseconds there, less than
#: a trip to aiosqlite's thread; a larger batch makes that trip worth it and would hold the
#: loop longer.
_INLINE_MAX_BATCH = 4

# PostgreSQL: any batch is this one statement. Arrays of the batch's values are unnested;
# ``created`` inserts the new sagas, ``fenced`` updates the sagas whose lease the writer
# still holds, and ``written`` upserts the step rows of exactly those sagas. One round trip,
# one commit (autocommit), atomic per saga and for the whole batch.
_PG_WRITE = """
WITH created AS (
    INSERT INTO saga_executions (
        saga_id, saga_name, saga_version, tenant_id, user_id, correlation_id, status,
        current_step, initial_data, context, lease_owner, lease_expires_at, deadline_at,
        created_at, updated_at, cancel_requested
    )
    SELECT n.saga_id, n.saga_name, n.saga_version, n.tenant_id, n.user_id, n.correlation_id,
        n.status, n.current_step, n.initial_data::jsonb, n.context::jsonb, n.lease_owner,
        n.lease_expires_at, n.deadline_at, n.created_at, n.created_at, false
    FROM unnest(
        $1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[],
        $6::varchar[], $7::varchar[], $8::integer[], $9::text[], $10::text[], $11::varchar[],
        $12::timestamptz[], $13::timestamptz[], $14::timestamptz[]
    ) AS n(
        saga_id, saga_name, saga_version, tenant_id, user_id, correlation_id, status,
        current_step, initial_data, context, lease_owner, lease_expires_at, deadline_at,
        created_at
    )
    ON CONFLICT (saga_id) DO NOTHING
    RETURNING saga_id
),
fenced AS (
    UPDATE saga_executions AS s
    SET status = c.status, current_step = c.current_step, error = c.error,
        failed_step = c.failed_step, completed_at = c.completed_at, updated_at = c.updated_at,
        lease_owner = CASE WHEN c.final THEN NULL ELSE s.lease_owner END,
        lease_expires_at = CASE WHEN c.final THEN NULL ELSE s.lease_expires_at END
    FROM unnest(
        $15::varchar[], $16::varchar[], $17::varchar[], $18::integer[], $19::text[],
        $20::varchar[], $21::timestamptz[], $22::timestamptz[], $23::boolean[]
    ) AS c(
        saga_id, lease_owner, status, current_step, error, failed_step, completed_at,
        updated_at, final
    )
    WHERE s.saga_id = c.saga_id AND s.lease_owner = c.lease_owner
    RETURNING s.saga_id, s.cancel_requested
),
written AS (
    INSERT INTO saga_step_executions (
        saga_id, step_name, step_index, status, attempts, compensation_attempts, result,
        error, started_at, completed_at, compensated_at
    )
    SELECT r.saga_id, r.step_name, r.step_index, r.status, r.attempts,
        r.compensation_attempts, r.result::jsonb, r.error, r.started_at, r.completed_at,
        r.compensated_at
    FROM unnest(
        $24::varchar[], $25::varchar[], $26::integer[], $27::varchar[], $28::integer[],
        $29::integer[], $30::text[], $31::text[], $32::timestamptz[], $33::timestamptz[],
        $34::timestamptz[]
    ) AS r(
        saga_id, step_name, step_index, status, attempts, compensation_attempts, result,
        error, started_at, completed_at, compensated_at
    )
    WHERE r.saga_id IN (SELECT saga_id FROM created UNION ALL SELECT saga_id FROM fenced)
    ON CONFLICT (saga_id, step_name) DO UPDATE SET
        step_index = excluded.step_index, status = excluded.status,
        attempts = excluded.attempts, compensation_attempts = excluded.compensation_attempts,
        result = excluded.result, error = excluded.error, started_at = excluded.started_at,
        completed_at = excluded.completed_at, compensated_at = excluded.compensated_at
)
SELECT saga_id, NULL::boolean AS cancel_requested, true AS created FROM created
UNION ALL
SELECT saga_id, cancel_requested, false FROM fenced
"""

# SQLite (no data-modifying CTEs, one writer at a time): a batch is one ``BEGIN IMMEDIATE``
# transaction of at most three statements, each taking the batch's rows as one JSON array
# (``json_each``): insert the new sagas, update the sagas whose lease the writer still holds
# (both return which rows they wrote), then upsert the step rows of exactly those sagas.


def _json_columns(alias: str, first: int, count: int) -> str:
    return ", ".join(f"json_extract({alias}.value, '$[{i}]')" for i in range(first, first + count))


_SQLITE_INSERT = f"""
INSERT INTO saga_executions (
    saga_id, saga_name, saga_version, tenant_id, user_id, correlation_id, status, current_step,
    initial_data, context, lease_owner, lease_expires_at, deadline_at, created_at, updated_at,
    cancel_requested
)
SELECT {_json_columns("n", 0, 14)}, json_extract(n.value, '$[13]'), 0
FROM json_each(?) AS n WHERE true
ON CONFLICT (saga_id) DO NOTHING
RETURNING saga_id
"""
_SQLITE_UPDATE = """
UPDATE saga_executions AS s
SET status = json_extract(c.value, '$[2]'), current_step = json_extract(c.value, '$[3]'),
    error = json_extract(c.value, '$[4]'), failed_step = json_extract(c.value, '$[5]'),
    completed_at = json_extract(c.value, '$[6]'), updated_at = json_extract(c.value, '$[7]'),
    lease_owner = CASE WHEN json_extract(c.value, '$[8]') THEN NULL ELSE s.lease_owner END,
    lease_expires_at = CASE WHEN json_extract(c.value, '$[8]') THEN NULL
        ELSE s.lease_expires_at END
FROM json_each(?) AS c
WHERE s.saga_id = json_extract(c.value, '$[0]')
    AND s.lease_owner = json_extract(c.value, '$[1]')
RETURNING saga_id, cancel_requested
"""
_SQLITE_STEPS = f"""
INSERT INTO saga_step_executions (
    saga_id, step_name, step_index, status, attempts, compensation_attempts, result, error,
    started_at, completed_at, compensated_at
)
SELECT {_json_columns("r", 0, 11)}
FROM json_each(?) AS r WHERE true
ON CONFLICT (saga_id, step_name) DO UPDATE SET
    step_index = excluded.step_index, status = excluded.status, attempts = excluded.attempts,
    compensation_attempts = excluded.compensation_attempts, result = excluded.result,
    error = excluded.error, started_at = excluded.started_at,
    completed_at = excluded.completed_at, compensated_at = excluded.compensated_at
"""


def _sqlite_batch(
    connection: sqlite3.Connection,
    new: str,
    changes: str,
    steps: list[tuple[bool, str, list[tuple[Any, ...]]]],
) -> tuple[set[str], dict[str, bool]]:
    """Write one batch on SQLite, inside the caller's transaction: the created and held sagas."""
    created: set[str] = set()
    held: dict[str, bool] = {}
    statement = _SQLITE_INSERT
    try:
        if new != "[]":
            created = {saga_id for (saga_id,) in connection.execute(statement, (new,))}
        if changes != "[]":
            statement = _SQLITE_UPDATE
            rows = connection.execute(statement, (changes,))
            held = {saga_id: bool(cancel) for saga_id, cancel in rows}
        # Only the steps of sagas whose row was written: a saga that lost its lease (or
        # whose id was taken) writes nothing.
        written = [
            row
            for is_new, saga_id, step_rows in steps
            if (saga_id in created if is_new else saga_id in held)
            for row in step_rows
        ]
        if written:
            statement = _SQLITE_STEPS
            connection.execute(statement, (json.dumps(written),))
    except sqlite3.Error as exc:
        # As SQLAlchemy would have raised it (OperationalError, IntegrityError, ...).
        raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc
    return created, held


@dataclasses.dataclass(slots=True, eq=False)
class _Write:
    """One saga's state change, waiting for its batch.

    ``new`` (a create) or ``change`` (a save) is set, with ``steps``; all values encoded.
    The future's result: for a create, whether the saga was inserted; for a save, the cancel
    flag, or None if the writer no longer holds the lease (nothing of it was written).
    """

    saga_id: str
    new: tuple[Any, ...] | None
    change: tuple[Any, ...] | None
    final: bool
    steps: list[tuple[Any, ...]]
    future: asyncio.Future[bool | None]


_Writer = Callable[[list[_Write]], Awaitable[dict[str, bool | None]]]


class _GroupCommit:
    """Writes submitted while a batch is being written go together in the next batch.

    The first writer finding nothing in progress lets the event loop run once, so that
    writers ready to write join its batch, then writes the batch itself (alone, it is a
    batch of one: no waiting, no extra task). That turn matters on SQLite, where a small
    batch is written without leaving the event loop's thread (``sqlite_driver.run_transaction``):
    without it no other writer could queue, and one transaction per change is slower than
    one per batch. Changes that arrive meanwhile queue up; when the batch is done, a task
    writes everything queued as the next batch, and so on. Each saga appears at most once
    per batch. If a batch fails, its changes are written one by one, so one bad change fails
    only its own writer. A writer cancelled before its batch started writes nothing.
    """

    def __init__(self, write: _Writer) -> None:
        self._write = write
        self._queue: list[_Write] = []
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, change: _Write) -> bool | None:
        """Write ``change`` in the next batch; return its result (see :class:`_Write`)."""
        loop = change.future.get_loop()
        if loop is not self._loop:
            # First use, or the store moved to another event loop (the old one is gone, and
            # with it anything it had queued).
            self._loop, self._queue, self._busy = loop, [], False
        self._queue.append(change)
        if self._busy:
            return await change.future
        self._busy = True
        try:
            await asyncio.sleep(0)  # one turn of the loop: see the class docstring
            await self._flush(self._take())
        except BaseException:
            if change.future.done() and not change.future.cancelled():
                change.future.exception()  # retrieved: it is raised right here instead
            raise
        finally:
            self._hand_over()
        return change.future.result()

    def _take(self) -> list[_Write]:
        batch: list[_Write] = []
        later: list[_Write] = []
        sagas: set[str] = set()
        for change in self._queue:
            if change.future.done():  # its writer was cancelled: write nothing
                continue
            if change.saga_id in sagas or len(batch) >= _MAX_BATCH:
                later.append(change)
            else:
                sagas.add(change.saga_id)
                batch.append(change)
        self._queue = later
        return batch

    def _hand_over(self) -> None:
        if not self._queue:
            self._busy = False
            return
        task = asyncio.get_running_loop().create_task(self._drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._flush(self._take())
        finally:
            self._busy = False
            abandoned, self._queue = self._queue, []
            for change in abandoned:  # only if this task was cancelled (loop shutdown)
                _settle(
                    change, PersistenceError("saga state write abandoned", operation="saga.save")
                )

    async def _flush(self, batch: list[_Write]) -> None:
        if not batch:
            return
        try:
            try:
                results = await self._write(batch)
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0], exc)
                    return
                # Nothing of the batch was written (one statement or one transaction):
                # write each change alone, so that only a bad one fails.
                for change in batch:
                    if change.future.done():
                        continue
                    try:
                        alone = await self._write([change])
                    except Exception as error:
                        _settle(change, error)
                    else:
                        _settle(change, alone[change.saga_id])
                return
            for change in batch:
                _settle(change, results[change.saga_id])
        except BaseException:
            # Cancelled mid-write (the loop is shutting down, or the only writer gave up):
            # whether the batch landed is unknown. The recovery worker will know.
            lost = PersistenceError(
                "saga state write interrupted; it may or may not have been committed",
                operation="saga.save",
            )
            for change in batch:
                _settle(change, lost)
            raise


def _settle(change: _Write, outcome: bool | None | Exception) -> None:
    if change.future.done():
        return
    if isinstance(outcome, Exception):
        change.future.set_exception(outcome)
    else:
        change.future.set_result(outcome)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Transpose ``rows`` into ``width`` column lists (PostgreSQL array parameters)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


class _Autocommit:
    """Single statements in autocommit mode; every database error leaves as PersistenceError.

    Checkout and connect included: a refused connection is an ``OSError`` that SQLAlchemy
    does not wrap.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = autocommit(engine)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        with persistence_errors("saga_store", self._engine.url):
            async with self._engine.connect() as conn:
                yield conn


def _to_record(row: Any) -> SagaRecord:
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


def _to_step(row: Row[Any]) -> StepRecord:
    return StepRecord(
        name=row.step_step_name,
        index=row.step_step_index,
        status=StepStatus(row.step_status),
        attempts=row.step_attempts,
        compensation_attempts=row.step_compensation_attempts,
        result=row.step_result,
        error=row.step_error,
        started_at=row.step_started_at,
        completed_at=row.step_completed_at,
        compensated_at=row.step_compensated_at,
    )


def _encoder(
    table: Table, names: Sequence[str], dialect: Dialect
) -> Callable[..., tuple[Any, ...]]:
    """Encode values of ``names`` (in order) as ``table``'s column types bind them."""
    processors = [
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    ]
    pairs = list(enumerate(processors))

    def encode(*values: Any) -> tuple[Any, ...]:
        out = list(values)
        for i, process in pairs:
            if process is not None:
                out[i] = process(out[i])
        return tuple(out)

    return encode


class SqlSagaStore:
    """The saga store on SQLite or PostgreSQL (the URL picks the dialect).

    State changes are group-committed (see the module docstring): a saga run alone costs one
    commit per state change; many sagas in flight share commits.

    Args:
        session_factory: The spec's ``db_session_factory`` (or an ``AsyncEngine``); the store
            uses its engine directly.
        clock: Where lease expiries and ``updated_at`` come from (the system clock by
            default); a saga coordinator passes its own.

    Raises:
        PersistenceError: From every method, for any error of the database, the driver or
            the network (the original is its ``__cause__``).
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession] | AsyncEngine,
        *,
        clock: Clock | None = None,
    ) -> None:
        engine = (
            session_factory
            if isinstance(session_factory, AsyncEngine)
            else engine_of(session_factory)
        )
        dialect = engine.dialect
        if dialect.name not in ("postgresql", "sqlite"):
            raise PersistenceError(f"unsupported database dialect {dialect.name!r}")
        self._engine = engine
        self.clock = as_clock(clock)
        # Single statements (reads, leases) run in autocommit: each is its own transaction,
        # with no BEGIN round trip. State changes go on the driver connection (_write).
        self._autocommit = _Autocommit(engine)
        self._postgres = dialect.name == "postgresql"
        self._encode_new = _encoder(_SAGAS, _NEW, dialect)
        self._encode_change = _encoder(_SAGAS, _CHANGE, dialect)
        self._encode_step = _encoder(_STEPS, _STEP, dialect)
        self._writes = _GroupCommit(self._write)

    def _lease_until(self, lease_seconds: float) -> dt.datetime:
        return self.clock.now() + dt.timedelta(seconds=lease_seconds)

    def _step_rows(self, saga_id: str, steps: Sequence[StepRecord]) -> list[tuple[Any, ...]]:
        # One row per step name (the last wins): an upsert may touch a row once.
        unique = list({step.name: step for step in steps}.values()) if len(steps) > 1 else steps
        return [
            self._encode_step(
                saga_id,
                step.name,
                step.index,
                step.status.value,
                step.attempts,
                step.compensation_attempts,
                step.result,
                step.error,
                step.started_at,
                step.completed_at,
                step.compensated_at,
            )
            for step in unique
        ]

    async def create(
        self,
        record: SagaRecord,
        owner: str,
        lease_seconds: float,
        steps: Sequence[StepRecord] = (),
    ) -> bool:
        """Insert a new saga owned by ``owner``, with ``steps``, in one transaction.

        Returns False (and writes nothing) if the id exists already.
        """
        new = self._encode_new(
            record.saga_id,
            record.saga_name,
            record.saga_version,
            record.tenant_id,
            record.user_id,
            record.correlation_id,
            record.status.value,
            record.current_step,
            record.initial_data,
            record.context,
            owner,
            self._lease_until(lease_seconds),
            record.deadline_at,
            self.clock.now(),
        )
        write = _Write(
            saga_id=record.saga_id,
            new=new,
            change=None,
            final=False,
            steps=self._step_rows(record.saga_id, steps),
            future=asyncio.get_running_loop().create_future(),
        )
        return bool(await self._writes.submit(write))

    async def save(self, record: SagaRecord, steps: Sequence[StepRecord], owner: str) -> bool:
        """Write the saga row and ``steps`` in one transaction, fenced by the lease.

        Returns whether a cancel was requested (the driving worker then compensates).

        Raises:
            SagaLeaseLostError: ``owner`` no longer holds the lease; nothing was written.
        """
        change = self._encode_change(
            record.saga_id,
            owner,
            record.status.value,
            record.current_step,
            record.error,
            record.failed_step,
            record.completed_at,
            self.clock.now(),
        )
        write = _Write(
            saga_id=record.saga_id,
            new=None,
            change=change,
            final=not record.status.is_active,
            steps=self._step_rows(record.saga_id, steps),
            future=asyncio.get_running_loop().create_future(),
        )
        cancel = await self._writes.submit(write)
        if cancel is None:
            raise SagaLeaseLostError(
                f"saga {record.saga_id}: lease lost; another worker owns it now",
                saga_id=record.saga_id,
                saga_name=record.saga_name,
            )
        return cancel

    async def _write(self, batch: list[_Write]) -> dict[str, bool | None]:
        """Write ``batch`` in one transaction; each change's result as :class:`_Write` says."""
        new = [w.new for w in batch if w.new is not None]
        changes = [(*w.change, w.final) for w in batch if w.change is not None]
        write = self._write_postgres if self._postgres else self._write_sqlite
        with persistence_errors("saga.save", self._engine.url):
            created, held = await write(batch, new, changes)
        return {
            w.saga_id: (w.saga_id in created) if w.new is not None else held.get(w.saga_id)
            for w in batch
        }

    async def _write_postgres(
        self, batch: list[_Write], new: list[tuple[Any, ...]], changes: list[tuple[Any, ...]]
    ) -> tuple[set[str], dict[str, bool]]:
        steps = [row for w in batch for row in w.steps]
        params = (
            *_columns(new, len(_NEW)),
            *_columns(changes, len(_CHANGE) + 1),
            *_columns(steps, len(_STEP)),
        )
        async with driver_connection(self._engine) as raw:
            rows: Sequence[Any] = await raw.fetch(_PG_WRITE, *params)
        created = {saga_id for saga_id, _, was_created in rows if was_created}
        held = {saga_id: bool(cancel) for saga_id, cancel, was_created in rows if not was_created}
        return created, held

    async def _write_sqlite(
        self, batch: list[_Write], new: list[tuple[Any, ...]], changes: list[tuple[Any, ...]]
    ) -> tuple[set[str], dict[str, bool]]:
        new_json, changes_json = json.dumps(new), json.dumps(changes)
        steps = [(w.new is not None, w.saga_id, w.steps) for w in batch]
        # The whole transaction at most one trip to a worker thread, and none when a small
        # batch gets the write lock at once (a trip costs more than its SQL; SQLAlchemy
        # would take one per statement and one for the COMMIT).
        return await run_transaction(
            self._engine,
            lambda connection: _sqlite_batch(connection, new_json, changes_json, steps),
            inline=len(batch) <= _INLINE_MAX_BATCH,
        )

    async def _rowcount(self, statement: Executable, params: dict[str, Any]) -> int:
        async with self._autocommit.connect() as conn:
            return int((await conn.execute(statement, params)).rowcount)

    async def load(self, saga_id: str, *, tenant_id: TenantScope) -> SagaRecord | None:
        """Return the saga with its steps, or None if it is missing or outside ``tenant_id``.

        The tenant is a condition of the query: another tenant's saga is never read.
        """
        kind, params = _scope_params(tenant_id, {"w_saga_id": saga_id})
        async with self._autocommit.connect() as conn:
            rows = (await conn.execute(_LOAD[kind], params)).all()
        if not rows:
            return None
        record = _to_record(rows[0])
        for row in rows:
            if row.step_step_name is not None:
                record.steps[row.step_step_name] = _to_step(row)
        return record

    async def acquire(self, saga_id: str, owner: str, lease_seconds: float) -> bool:
        """Take the lease of an active saga if it is free, expired or ours already."""
        params = {
            "w_saga_id": saga_id,
            "w_owner": owner,
            "w_now": self.clock.now(),
            "v_lease_owner": owner,
            "v_lease_expires_at": self._lease_until(lease_seconds),
        }
        return bool(await self._rowcount(_ACQUIRE, params))

    async def renew(self, saga_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend ``owner``'s lease; False if it was lost."""
        params = {
            "w_saga_id": saga_id,
            "w_owner": owner,
            "v_lease_expires_at": self._lease_until(lease_seconds),
        }
        return bool(await self._rowcount(_RENEW, params))

    async def reopen(
        self, saga_id: str, owner: str, lease_seconds: float, *, tenant_id: TenantScope
    ) -> bool:
        """Move a ``compensation_failed`` saga of ``tenant_id`` back to ``compensating``.

        The saga is leased to ``owner``; False (nothing changed) if no such saga is in
        ``compensation_failed``.
        """
        params = {
            "w_saga_id": saga_id,
            "v_lease_owner": owner,
            "v_lease_expires_at": self._lease_until(lease_seconds),
        }
        kind, params = _scope_params(tenant_id, params)
        return bool(await self._rowcount(_REOPEN[kind], params))

    async def request_cancel(self, saga_id: str, *, tenant_id: TenantScope) -> bool:
        """Flag an active saga of ``tenant_id`` for cancellation; False if there is none."""
        kind, params = _scope_params(tenant_id, {"w_saga_id": saga_id})
        return bool(await self._rowcount(_REQUEST_CANCEL[kind], params))

    async def claim_expired(
        self,
        owner: str,
        lease_seconds: float,
        limit: int,
        *,
        saga_names: Collection[str] | None = None,
    ) -> list[str]:
        """Take over up to ``limit`` active sagas whose lease expired; return their ids.

        With ``saga_names``, only sagas of those types (an empty collection claims nothing).
        On PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets several workers scan at once without
        waiting on each other's candidates. The conditional UPDATE is the real guard (and the
        only one on SQLite, which ignores ``FOR UPDATE``): of two claimers, one matches.
        """
        if saga_names is not None and not saga_names:
            return []
        with persistence_errors("saga.claim_expired", self._engine.url):
            return await self._claim_expired(
                self.clock.now(), owner, lease_seconds, limit, saga_names
            )

    async def _claim_expired(
        self,
        now: dt.datetime,
        owner: str,
        lease_seconds: float,
        limit: int,
        saga_names: Collection[str] | None,
    ) -> list[str]:
        claimed: list[str] = []
        async with self._engine.begin() as conn:
            if saga_names is None:
                candidates = await conn.execute(_CANDIDATES, {"w_now": now, "w_limit": limit})
            else:
                candidates = await conn.execute(
                    _CANDIDATES_OF_TYPES,
                    {"w_now": now, "w_limit": limit, "w_names": sorted(saga_names)},
                )
            for saga_id, previous_owner in candidates.all():
                params = {
                    "w_saga_id": saga_id,
                    "w_now": now,
                    "w_previous": previous_owner,
                    "v_lease_owner": owner,
                    "v_lease_expires_at": self._lease_until(lease_seconds),
                }
                claim = _CLAIM_ORPHAN if previous_owner is None else _CLAIM_FROM
                if (await conn.execute(claim, params)).rowcount:
                    claimed.append(saga_id)
        return claimed

    async def list(
        self, *, tenant_id: TenantScope, status: SagaStatus | None, limit: int
    ) -> list[SagaRecord]:
        """Sagas of ``tenant_id``, newest first, optionally of one status (steps not loaded).

        The tenant is a condition of the query (the limit counts that tenant's sagas only).
        """
        kind, params = _scope_params(tenant_id, {"w_limit": limit})
        statement = _LIST[(kind, status is not None)]
        if status is not None:
            params["w_status"] = status.value
        async with self._autocommit.connect() as conn:
            return [_to_record(row) for row in await conn.execute(statement, params)]
