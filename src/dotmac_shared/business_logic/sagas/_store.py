"""Durable saga state: the store ``Protocol``, its records, and the SQL store's shared part.

The store writes what the coordinator decided; the state machine lives in ``_states.py``.
Every write that belongs to a running saga is fenced by the lease: it only lands if the
writer still owns the saga, so a worker that stalled past its lease cannot overwrite the
progress of the worker that took over (it gets :class:`SagaLeaseLostError` and stops).

Reads and lease updates are single statements on SQLAlchemy Core, built once with bind
parameters (each call only binds values and hits the compiled cache), in autocommit mode;
they are the same on both databases and live here. State changes (a new saga, or a saga row
plus its step rows) are the hot path: they are group-committed (``_group_commit.py``) and each
batch is written by a :class:`BatchWriter` of the dialect (``_store_postgres.py``: one
statement; ``_store_sqlite.py``: one ``BEGIN IMMEDIATE`` transaction). The columns each write
carries are derived from the tables' metadata (:data:`NEW_COLUMNS`, :data:`CHANGE_COLUMNS`,
:data:`STEP_COLUMNS`). Either way each saga's change is atomic and fenced on its own: one
saga's lost lease (or bad data) does not stop the others' changes in the same batch.

Every database, driver or network error that leaves a public method is a
:class:`PersistenceError` with the original chained (``persistence.driver.persistence_errors``,
applied where the store reaches the database). Every wall time the store writes or compares
(leases, ``updated_at``) comes from its injected :class:`Clock`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import operator
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any, Literal, Protocol, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Dialect,
    Executable,
    Table,
    and_,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import Select, Update

from dotmac_shared.business_logic.clock import Clock, as_clock
from dotmac_shared.business_logic.exceptions import PersistenceError, SagaLeaseLostError
from dotmac_shared.business_logic.persistence._driver import persistence_errors
from dotmac_shared.business_logic.persistence._session import autocommit, engine_of
from dotmac_shared.business_logic.persistence.models import (
    SagaEventEntry,
    SagaExecution,
    SagaStepExecution,
)
from dotmac_shared.business_logic.sagas._cursor import SagaPosition
from dotmac_shared.business_logic.sagas._group_commit import GroupCommit, Write
from dotmac_shared.business_logic.sagas._results import SagaEvent, SagaFailure
from dotmac_shared.business_logic.sagas._scope import ALL_TENANTS, TenantScope, tenant_scope
from dotmac_shared.business_logic.sagas._states import SagaStatus, StepStatus

__all__ = [
    "CHANGE_COLUMNS",
    "EVENT_COLUMNS",
    "NEW_COLUMNS",
    "STEP_COLUMNS",
    "BatchWriter",
    "SagaRecord",
    "SagaStore",
    "SqlSagaStore",
    "StepRecord",
]

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
    error: SagaFailure | None = None
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
    error: SagaFailure | None = None
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
        events: Sequence[SagaEvent] = (),
    ) -> bool:
        """Insert a new saga owned by ``owner``, with ``steps`` and ``events``, in one transaction.

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

    async def save(
        self,
        record: SagaRecord,
        steps: Sequence[StepRecord],
        owner: str,
        events: Sequence[SagaEvent] = (),
    ) -> bool:
        """Write the saga row, ``steps`` and ``events`` in one transaction, fenced by the lease.

        Returns whether a cancel was requested.
        """
        ...

    async def request_cancel(
        self, saga_id: str, *, tenant_id: TenantScope, event: SagaEvent | None = None
    ) -> bool:
        """Flag an active saga of ``tenant_id`` for cancellation; False if there is none.

        ``event`` is appended to its history in the same transaction (if the flag was set).
        """
        ...

    async def repair(
        self,
        record: SagaRecord,
        steps: Sequence[StepRecord],
        events: Sequence[SagaEvent],
        *,
        expected: tuple[SagaStatus, dt.datetime | None],
        owner: str | None,
        lease_seconds: float,
        tenant_id: TenantScope,
    ) -> bool:
        """An operator's repair: the saga row, ``steps`` and ``events`` in one transaction.

        Lands only if the saga of ``tenant_id`` still has the status and ``updated_at`` of
        ``expected`` (nobody changed it since it was read); else nothing is written and
        False is returned. With ``owner``, the saga is leased to it (it drives it on).
        """
        ...

    async def history(
        self,
        saga_id: str,
        *,
        tenant_id: TenantScope,
        after: int | None = None,
        limit: int | None = None,
    ) -> list[SagaEvent]:
        """The saga's history, oldest first: entries after sequence ``after``, at most ``limit``.

        Empty for a saga outside ``tenant_id`` (the tenant is a condition of the query).
        """
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

    async def page(
        self,
        *,
        tenant_id: TenantScope,
        limit: int,
        saga_name: str | None = None,
        status: SagaStatus | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        after: SagaPosition | None = None,
    ) -> list[SagaRecord]:
        """Up to ``limit`` sagas of ``tenant_id`` that match every filter given, newest first.

        The order is ``(created_at, saga_id)`` descending (the id breaks ties). Steps are not
        loaded.

        Args:
            tenant_id: Whose sagas (a condition of the query, as for :meth:`load`).
            limit: At most this many.
            saga_name: Only sagas of this type.
            status: Only sagas in this status.
            created_after: Only sagas created at or after this time (aware).
            created_before: Only sagas created before this time (aware).
            after: Only sagas that come after this position in the order: older, or as old
                with a smaller id (the position of the last saga of the previous page).
        """
        ...


_SAGAS = cast(Table, SagaExecution.__table__)
_STEPS = cast(Table, SagaStepExecution.__table__)
_EVENTS = cast(Table, SagaEventEntry.__table__)
_S = _SAGAS.c
_T = _STEPS.c
_E = _EVENTS.c

# --- the columns each write carries, derived from the tables ------------------------------
#: Saga columns a create does not set: the outcome (null until it exists), the cancel flag
#: (false), and ``updated_at`` (the creation time: the writer copies ``created_at``).
_NOT_CREATED = frozenset({"error", "failed_step", "completed_at", "cancel_requested", "updated_at"})
#: Saga columns a state change sets (after its key and fence, ``saga_id`` and
#: ``lease_owner``): everything but what identifies the saga, its input and its lease.
_NOT_CHANGED = frozenset(
    {
        "saga_id",
        "saga_name",
        "saga_version",
        "tenant_id",
        "user_id",
        "correlation_id",
        "initial_data",
        "context",
        "cancel_requested",
        "lease_owner",
        "lease_expires_at",
        "deadline_at",
        "created_at",
    }
)
#: A new saga row, in table order.
NEW_COLUMNS: tuple[str, ...] = tuple(c.name for c in _SAGAS.columns if c.name not in _NOT_CREATED)
#: A state change of a saga row: key, fence (the lease owner), then the new values. A
#: change row carries one more value after these: whether the saga is final (then its lease
#: is released: nobody owns a finished saga).
CHANGE_COLUMNS: tuple[str, ...] = (
    "saga_id",
    "lease_owner",
    *(c.name for c in _SAGAS.columns if c.name not in _NOT_CHANGED),
)
#: A step row, in table order; ``(saga_id, step_name)`` is its key.
STEP_COLUMNS: tuple[str, ...] = tuple(c.name for c in _STEPS.columns)
#: A history row, in table order (its ``id`` is the database's).
EVENT_COLUMNS: tuple[str, ...] = tuple(c.name for c in _EVENTS.columns if c.name != "id")
#: The step row's columns as :class:`StepRecord` attributes.
_STEP_ATTRIBUTES = {"step_name": "name", "step_index": "index"}

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
_HISTORY = {
    kind: _scoped(
        select(_EVENTS)
        .select_from(_EVENTS.join(_SAGAS, _S.saga_id == _E.saga_id))
        .where(_E.saga_id == _bind("w_saga_id", _E.saga_id))
        .where(_E.id > _bind("w_after", _E.id))
        .order_by(_E.id)
        .limit(_bind("w_limit", _E.id)),
        kind,
    )
    for kind in _SCOPES
}
_INSERT_EVENTS = insert(_EVENTS)
_REPAIR_STEP = (
    update(_STEPS)
    .where(
        _T.saga_id == _bind("w_saga_id", _T.saga_id),
        _T.step_name == _bind("w_step", _T.step_name),
    )
    .values(
        {
            name: _bind(f"v_{name}", _T[name])
            for name in STEP_COLUMNS
            if name not in ("saga_id", "step_name")
        }
    )
)
_REPAIRED = ("status", "current_step", "error", "failed_step", "completed_at", "updated_at")
_REPAIR = {
    kind: _scoped(
        update(_SAGAS)
        .where(
            _THIS_SAGA,
            _S.status == _bind("w_status", _S.status),
            _S.updated_at == _bind("w_updated_at", _S.updated_at),
        )
        .values(
            {
                **{name: _bind(f"v_{name}", _S[name]) for name in _REPAIRED},
                "lease_owner": _bind("v_lease_owner", _S.lease_owner),
                "lease_expires_at": _bind("v_lease_expires_at", _S.lease_expires_at),
                "cancel_requested": False,
            }
        ),
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


@functools.cache
def _page_statement(
    kind: _ScopeKind,
    by_name: bool,
    by_status: bool,
    since: bool,
    until: bool,
    after: bool,
) -> Select[Any]:
    """The page query of one combination of filters (built once per combination)."""
    query = _scoped(select(_SAGAS), kind)
    if by_name:
        query = query.where(_S.saga_name == _bind("w_name", _S.saga_name))
    if by_status:
        query = query.where(_S.status == _bind("w_status", _S.status))
    if since:
        query = query.where(_S.created_at >= _bind("w_since", _S.created_at))
    if until:
        query = query.where(_S.created_at < _bind("w_until", _S.created_at))
    if after:
        # Keyset: strictly after the previous page's last saga in (created_at, saga_id)
        # descending order. Exact equality on created_at is sound: the value compared is
        # one the database returned, bound back through the same column type.
        after_created = _bind("w_after_created", _S.created_at)
        query = query.where(
            or_(
                _S.created_at < after_created,
                and_(
                    _S.created_at == after_created,
                    _S.saga_id < _bind("w_after_id", _S.saga_id),
                ),
            )
        )
    return query.order_by(_S.created_at.desc(), _S.saga_id.desc()).limit(
        _bind("w_limit", _S.current_step)
    )


class _Row:
    """Reads a write's values in a column order off a record, plus values given per write.

    ``attributes`` maps a column to the record attribute holding its value (the column's
    own name by default); ``given`` are the columns whose value each write supplies
    (positions filled in by :meth:`values`). One C-level ``attrgetter`` call reads the rest.
    """

    def __init__(
        self, columns: Sequence[str], given: Sequence[str], attributes: dict[str, str]
    ) -> None:
        # A given column reads a placeholder attribute (overwritten right after).
        placeholder = "saga_id" if "saga_id" not in given else "name"
        self._read = operator.attrgetter(
            *(placeholder if c in given else attributes.get(c, c) for c in columns)
        )
        self._at = [columns.index(c) for c in given]

    def values(self, record: object, *given: Any) -> list[Any]:
        """The row of ``record``, with ``given`` in the given columns' positions."""
        row = list(self._read(record))
        for position, value in zip(self._at, given, strict=True):
            row[position] = value
        return row


_NEW_ROW = _Row(NEW_COLUMNS, ("status", "lease_owner", "lease_expires_at", "created_at"), {})
_CHANGE_ROW = _Row(CHANGE_COLUMNS, ("lease_owner", "status", "error", "updated_at"), {})
_STEP_ROW = _Row(STEP_COLUMNS, ("saga_id", "status", "error"), _STEP_ATTRIBUTES)


def _step_values(saga_id: str, step: StepRecord) -> list[Any]:
    """``step``'s row values in :data:`STEP_COLUMNS` order."""
    return _STEP_ROW.values(step, saga_id, step.status.value, _stored(step.error))


def _event_values(saga_id: str, event: SagaEvent) -> dict[str, Any]:
    """``event``'s row values by column (:data:`EVENT_COLUMNS`)."""
    return {
        "saga_id": saga_id,
        "occurred_at": event.occurred_at,
        "kind": event.kind,
        "step_name": event.step,
        "status": event.status,
        "attempt": event.attempt,
        "worker": event.worker,
        "operator": event.operator,
        "reason": event.reason,
        "error": _stored(event.error),
        "data": dict(event.data) if event.data is not None else None,
    }


def _to_event(row: Any) -> SagaEvent:
    return SagaEvent(
        kind=row.kind,
        occurred_at=row.occurred_at,
        step=row.step_name,
        status=row.status,
        attempt=row.attempt,
        worker=row.worker,
        operator=row.operator,
        reason=row.reason,
        error=_failure(row.error),
        data=row.data,
        sequence=row.id,
    )


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
        error=_failure(row.error),
        failed_step=row.failed_step,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        deadline_at=row.deadline_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
    )


def _failure(stored: Any) -> SagaFailure | None:
    return None if stored is None else SagaFailure.from_dict(stored)


def _stored(failure: SagaFailure | None) -> dict[str, Any] | None:
    return None if failure is None else failure.to_dict()


def _to_step(row: Row[Any]) -> StepRecord:
    return StepRecord(
        name=row.step_step_name,
        index=row.step_step_index,
        status=StepStatus(row.step_status),
        attempts=row.step_attempts,
        compensation_attempts=row.step_compensation_attempts,
        result=row.step_result,
        error=_failure(row.step_error),
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
    # Only the columns whose type converts anything (most pass values through as they are).
    pairs = [(i, process) for i, process in enumerate(processors) if process is not None]

    def encode(*values: Any) -> tuple[Any, ...]:
        out = list(values)
        for i, process in pairs:
            out[i] = process(out[i])
        return tuple(out)

    return encode


class BatchWriter(abc.ABC):
    """Writes one batch of state changes on one database: the part of the store per dialect.

    Args:
        engine: The store's engine.

    A subclass implements :meth:`write`; values arrive encoded by the columns' own types
    (in :data:`NEW_COLUMNS`, :data:`CHANGE_COLUMNS` plus ``final``, :data:`STEP_COLUMNS`
    order).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @abc.abstractmethod
    async def write(
        self, batch: list[Write], new: list[tuple[Any, ...]], changes: list[tuple[Any, ...]]
    ) -> tuple[set[str], dict[str, bool]]:
        """Write ``batch`` in one transaction, atomic and fenced per saga.

        Returns:
            The ids of the sagas created, and for each saga whose change landed (its writer
            held the lease), whether a cancel was requested.
        """


def _batch_writer(engine: AsyncEngine) -> BatchWriter:
    """The batch writer of ``engine``'s dialect."""
    name = engine.dialect.name
    if name == "postgresql":
        from dotmac_shared.business_logic.sagas._store_postgres import (  # noqa: PLC0415
            PostgresBatchWriter,
        )

        return PostgresBatchWriter(engine)
    if name == "sqlite":
        from dotmac_shared.business_logic.sagas._store_sqlite import (  # noqa: PLC0415
            SqliteBatchWriter,
        )

        return SqliteBatchWriter(engine)
    raise PersistenceError(f"unsupported database dialect {name!r}")


class SqlSagaStore:
    """The saga store on SQLite or PostgreSQL (the URL picks the dialect).

    Reads, leases and operator actions are shared statements; state changes are
    group-committed and written by the dialect's :class:`BatchWriter`: a saga run alone
    costs one commit per state change; many sagas in flight share commits.

    Args:
        session_factory: The spec's ``session_factory`` (or an ``AsyncEngine``); the store
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
        self._writer = _batch_writer(engine)
        self._engine = engine
        self.clock = as_clock(clock)
        # Single statements (reads, leases) run in autocommit: each is its own transaction,
        # with no BEGIN round trip. State changes go through the batch writer.
        self._autocommit = _Autocommit(engine)
        dialect = engine.dialect
        self._encode_new = _encoder(_SAGAS, NEW_COLUMNS, dialect)
        self._encode_change = _encoder(_SAGAS, CHANGE_COLUMNS, dialect)
        self._encode_step = _encoder(_STEPS, STEP_COLUMNS, dialect)
        self._encode_event = _encoder(_EVENTS, EVENT_COLUMNS, dialect)
        self._writes = GroupCommit(self._write)

    def _lease_until(self, lease_seconds: float) -> dt.datetime:
        return self.clock.now() + dt.timedelta(seconds=lease_seconds)

    def _step_rows(self, saga_id: str, steps: Sequence[StepRecord]) -> list[tuple[Any, ...]]:
        # One row per step name (the last wins): an upsert may touch a row once.
        unique = list({step.name: step for step in steps}.values()) if len(steps) > 1 else steps
        return [self._encode_step(*_step_values(saga_id, step)) for step in unique]

    def _event_rows(self, saga_id: str, events: Sequence[SagaEvent]) -> list[tuple[Any, ...]]:
        # The hot path (every state change): one tuple per entry, in EVENT_COLUMNS order.
        encode = self._encode_event
        return [
            encode(
                saga_id,
                e.occurred_at,
                e.kind,
                e.step,
                e.status,
                e.attempt,
                e.worker,
                e.operator,
                e.reason,
                None if e.error is None else e.error.to_dict(),
                None if e.data is None else dict(e.data),
            )
            for e in events
        ]

    async def create(
        self,
        record: SagaRecord,
        owner: str,
        lease_seconds: float,
        steps: Sequence[StepRecord] = (),
        events: Sequence[SagaEvent] = (),
    ) -> bool:
        """Insert a new saga owned by ``owner``, with ``steps`` and ``events``, in one transaction.

        Returns False (and writes nothing) if the id exists already.
        """
        new = self._encode_new(
            *_NEW_ROW.values(
                record,
                record.status.value,
                owner,
                self._lease_until(lease_seconds),
                record.created_at or self.clock.now(),
            )
        )
        write = Write(
            saga_id=record.saga_id,
            new=new,
            change=None,
            final=False,
            steps=self._step_rows(record.saga_id, steps),
            future=asyncio.get_running_loop().create_future(),
            events=self._event_rows(record.saga_id, events),
        )
        return bool(await self._writes.submit(write))

    async def save(
        self,
        record: SagaRecord,
        steps: Sequence[StepRecord],
        owner: str,
        events: Sequence[SagaEvent] = (),
    ) -> bool:
        """Write the saga row, ``steps`` and ``events`` in one transaction, fenced by the lease.

        ``updated_at`` is the record's (the store's clock if it has none). Returns whether a
        cancel was requested (the driving worker then compensates).

        Raises:
            SagaLeaseLostError: ``owner`` no longer holds the lease; nothing was written.
        """
        change = self._encode_change(
            *_CHANGE_ROW.values(
                record,
                owner,
                record.status.value,
                _stored(record.error),
                record.updated_at or self.clock.now(),
            )
        )
        write = Write(
            saga_id=record.saga_id,
            new=None,
            change=change,
            final=not record.status.is_active,
            steps=self._step_rows(record.saga_id, steps),
            future=asyncio.get_running_loop().create_future(),
            events=self._event_rows(record.saga_id, events),
        )
        cancel = await self._writes.submit(write)
        if cancel is None:
            raise SagaLeaseLostError(
                f"saga {record.saga_id}: lease lost; another worker owns it now",
                saga_id=record.saga_id,
                saga_name=record.saga_name,
            )
        return cancel

    async def _write(self, batch: list[Write]) -> dict[str, bool | None]:
        """Write ``batch`` in one transaction; each change's result as :class:`Write` says."""
        new = [w.new for w in batch if w.new is not None]
        changes = [(*w.change, w.final) for w in batch if w.change is not None]
        with persistence_errors("saga.save", self._engine.url):
            created, held = await self._writer.write(batch, new, changes)
        return {
            w.saga_id: (w.saga_id in created) if w.new is not None else held.get(w.saga_id)
            for w in batch
        }

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

    async def request_cancel(
        self, saga_id: str, *, tenant_id: TenantScope, event: SagaEvent | None = None
    ) -> bool:
        """Flag an active saga of ``tenant_id`` for cancellation; False if there is none.

        ``event`` is appended to its history in the same transaction (if the flag was set).
        """
        kind, params = _scope_params(tenant_id, {"w_saga_id": saga_id})
        if event is None:
            return bool(await self._rowcount(_REQUEST_CANCEL[kind], params))
        with persistence_errors("saga.request_cancel", self._engine.url):
            async with self._engine.begin() as conn:
                if not (await conn.execute(_REQUEST_CANCEL[kind], params)).rowcount:
                    return False
                await conn.execute(_INSERT_EVENTS, [_event_values(saga_id, event)])
        return True

    async def repair(
        self,
        record: SagaRecord,
        steps: Sequence[StepRecord],
        events: Sequence[SagaEvent],
        *,
        expected: tuple[SagaStatus, dt.datetime | None],
        owner: str | None,
        lease_seconds: float,
        tenant_id: TenantScope,
    ) -> bool:
        """An operator's repair: the saga row, ``steps`` and ``events`` in one transaction.

        Fenced like a lease: the row is updated only if its status and ``updated_at`` are
        still those read (``expected``), so of two operators (or an operator and a worker
        that took the saga meanwhile) acting on the same state, one wins and the other
        changes nothing. Any failure rolls the whole repair back.
        """
        status, updated_at = expected
        params: dict[str, Any] = {
            "w_saga_id": record.saga_id,
            "w_status": status.value,
            "w_updated_at": updated_at,
            "v_status": record.status.value,
            "v_current_step": record.current_step,
            "v_error": _stored(record.error),
            "v_failed_step": record.failed_step,
            "v_completed_at": record.completed_at,
            "v_updated_at": record.updated_at or self.clock.now(),
            "v_lease_owner": owner,
            "v_lease_expires_at": self._lease_until(lease_seconds) if owner else None,
        }
        kind, params = _scope_params(tenant_id, params)
        with persistence_errors("saga.repair", self._engine.url):
            async with self._engine.begin() as conn:
                if not (await conn.execute(_REPAIR[kind], params)).rowcount:
                    return False
                for step in steps:
                    row = _step_values(record.saga_id, step)
                    values = dict(zip(STEP_COLUMNS, row, strict=True))
                    step_params = {
                        f"v_{name}": value
                        for name, value in values.items()
                        if name not in ("saga_id", "step_name")
                    }
                    await conn.execute(
                        _REPAIR_STEP,
                        {"w_saga_id": record.saga_id, "w_step": step.name, **step_params},
                    )
                if events:
                    await conn.execute(
                        _INSERT_EVENTS, [_event_values(record.saga_id, e) for e in events]
                    )
        return True

    async def history(
        self,
        saga_id: str,
        *,
        tenant_id: TenantScope,
        after: int | None = None,
        limit: int | None = None,
    ) -> list[SagaEvent]:
        """The saga's history, oldest first: entries after sequence ``after``, at most ``limit``.

        Empty for a saga outside ``tenant_id`` (the tenant is a condition of the query).
        """
        params = {
            "w_saga_id": saga_id,
            "w_after": after if after is not None else -1,
            "w_limit": limit if limit is not None else 1_000_000,
        }
        kind, params = _scope_params(tenant_id, params)
        async with self._autocommit.connect() as conn:
            return [_to_event(row) for row in await conn.execute(_HISTORY[kind], params)]

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

    async def page(
        self,
        *,
        tenant_id: TenantScope,
        limit: int,
        saga_name: str | None = None,
        status: SagaStatus | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        after: SagaPosition | None = None,
    ) -> list[SagaRecord]:
        """Up to ``limit`` sagas of ``tenant_id`` that match every filter given, newest first.

        The order is ``(created_at, saga_id)`` descending; ``after`` is a position in it
        (see :class:`SagaStore`). The tenant and every filter are conditions of one query
        (the limit counts matching sagas only). Steps are not loaded.
        """
        kind, params = _scope_params(tenant_id, {"w_limit": limit})
        if saga_name is not None:
            params["w_name"] = saga_name
        if status is not None:
            params["w_status"] = status.value
        if created_after is not None:
            params["w_since"] = created_after
        if created_before is not None:
            params["w_until"] = created_before
        if after is not None:
            params["w_after_created"], params["w_after_id"] = after
        statement = _page_statement(
            kind,
            saga_name is not None,
            status is not None,
            created_after is not None,
            created_before is not None,
            after is not None,
        )
        async with self._autocommit.connect() as conn:
            return [_to_record(row) for row in await conn.execute(statement, params)]

    async def list(
        self, *, tenant_id: TenantScope, status: SagaStatus | None, limit: int
    ) -> list[SagaRecord]:
        """Sagas of ``tenant_id``, newest first, optionally of one status (steps not loaded).

        The first page of :meth:`page` with only these filters.
        """
        return await self.page(tenant_id=tenant_id, status=status, limit=limit)
