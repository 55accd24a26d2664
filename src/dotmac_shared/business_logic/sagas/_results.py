"""What the coordinator returns: typed, frozen results with a JSON view.

:class:`SagaResult` is what ``execute_saga``, ``resume_saga``, ``cancel_saga`` and ``get_saga``
return; :class:`SagaSummary` is one row of ``list_sagas``, :class:`SagaPage` one page of
``page_sagas``. Each is also a read-only
``Mapping`` (``result["status"]``, ``result["step_results"]["activate_service"]``), whose
values are the Python values of its fields (step results decoded: ``Decimal``, ``datetime``,
``UUID``; failures as plain mappings); ``to_dict()`` is the same with only JSON types.

A failure is a :class:`SagaFailure`: a stable ``code`` (the ``BusinessLogicError`` code of
the exception, or one of the generic codes below for any other exception), the message, the
step it happened in and the structured context the exception carried (``field``,
``reasons``, failed rules...).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from dotmac_shared.business_logic.exceptions import BusinessLogicError
from dotmac_shared.business_logic.sagas._states import SagaStatus, StepStatus

__all__ = [
    "CANCELLED",
    "STEP_TIMEOUT",
    "UNEXPECTED_ERROR",
    "SagaEvent",
    "SagaFailure",
    "SagaPage",
    "SagaResult",
    "SagaStepResult",
    "SagaSummary",
]

#: Code of a saga compensated because a cancel was requested.
CANCELLED = "saga_cancelled"
#: Code of a step try that ran past its own ``timeout`` (a builtin ``TimeoutError``).
STEP_TIMEOUT = "step_timeout"
#: Code of any exception that is not a ``BusinessLogicError`` (its type is in the context).
UNEXPECTED_ERROR = "unexpected_error"
#: Longest message kept for a failure (the rest is cut, marked with "…").
MAX_ERROR_CHARS = 2_000
#: Keys of ``BusinessLogicError.to_dict()`` that are the failure's own fields, not context.
_OWN_KEYS = frozenset({"code", "message"})


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def jsonable(value: Any) -> Any:
    """``value`` with only JSON types: decimals, times and UUIDs as strings, enums by value."""
    if value is None or isinstance(value, bool | int | float | str):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, SagaFailure | SagaStepResult | SagaEvent):
        return value.to_dict()
    return str(value)


@dataclasses.dataclass(frozen=True, slots=True)
class SagaFailure:
    """Why a saga or a step failed, as data a caller can act on (no string to parse).

    Attributes:
        code: Stable code: the ``BusinessLogicError`` code (``invalid_input``...), or
            :data:`UNEXPECTED_ERROR`, :data:`STEP_TIMEOUT`, :data:`CANCELLED`.
        message: What went wrong, in words.
        step: The step it happened in (None for the saga as a whole, e.g. a cancel).
        context: The exception's structured context (JSON): ``field``, ``reasons``,
            ``metadata``...; for a foreign exception, ``exception_type``.
    """

    code: str
    message: str
    step: str | None = None
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_exception(cls, exc: BaseException, step: str | None) -> SagaFailure:
        """The failure that ``exc``, raised by ``step``, stands for."""
        if isinstance(exc, BusinessLogicError):
            details = exc.to_dict()
            context = {
                k: v for k, v in details.items() if k not in _OWN_KEYS and v not in (None, {}, [])
            }
            return cls(exc.code, _bounded(exc.message), step, jsonable(context))
        code = STEP_TIMEOUT if isinstance(exc, TimeoutError) else UNEXPECTED_ERROR
        message = str(exc) or type(exc).__name__
        return cls(code, _bounded(message), step, {"exception_type": type(exc).__name__})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str) -> SagaFailure:
        """A failure from :meth:`to_dict`'s form (a bare string: a failure stored as text)."""
        if isinstance(data, str):
            return cls(UNEXPECTED_ERROR, data)
        return cls(
            code=str(data.get("code", UNEXPECTED_ERROR)),
            message=str(data.get("message", "")),
            step=data.get("step"),
            context=dict(data.get("context") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"code", "message", "step", "context"}``, JSON types only."""
        return {
            "code": self.code,
            "message": self.message,
            "step": self.step,
            "context": jsonable(self.context),
        }


class _MappingView(Mapping[str, Any]):
    """Read-only mapping access to a result's fields (their Python values)."""

    __slots__ = ()

    def _view(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self._view()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view())

    def __len__(self) -> int:
        return len(self._view())

    def to_dict(self) -> dict[str, Any]:
        """The result with only JSON types (for APIs and logs)."""
        data: dict[str, Any] = jsonable(self._view())
        return data


def _failure_view(failure: SagaFailure | None) -> dict[str, Any] | None:
    return None if failure is None else failure.to_dict()


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class SagaStepResult(_MappingView):
    """One step of a saga as stored.

    Attributes:
        name: The step's name. index: Its position in the definition.
        status: Where it is. attempts: Tries of its action (durably counted).
        compensation_attempts: Tries of its compensation.
        result: What it returned (decoded), if it completed.
        error: Its failure (or its compensation's), if any.
        started_at, completed_at, compensated_at: When (the coordinator's clock).
    """

    name: str
    index: int
    status: StepStatus
    attempts: int = 0
    compensation_attempts: int = 0
    result: Mapping[str, Any] | None = None
    error: SagaFailure | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    compensated_at: dt.datetime | None = None

    def _view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "index": self.index,
            "status": self.status.value,
            "attempts": self.attempts,
            "compensation_attempts": self.compensation_attempts,
            "result": self.result,
            "error": _failure_view(self.error),
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "compensated_at": self.compensated_at,
        }


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class SagaEvent(_MappingView):
    """One entry of a saga's history: a transition, or an operator's action.

    Attributes:
        kind: What happened: ``saga.<status>`` (the saga entered that status),
            ``step.<status>`` (a step did), or ``action.<name>`` (an operator's repair:
            ``retry_compensation``, ``mark_step_compensated``, ``retry_step``, ``cancel``,
            ``resolve_incident``, ``resume``).
        occurred_at: When (the coordinator's clock).
        step: The step concerned, if any. status: The status entered, if a transition.
        attempt: The try it was (of the action, or of the compensation in a compensating
            state), if a step event.
        worker: The worker (lease owner) that wrote it.
        operator, reason: Who acted and why (manual actions and what they caused).
        error: The failure, for a failed step or compensation, or a saga that stopped.
        data: Anything else recorded (e.g. the output a person gave when resolving).
        sequence: Its position in the saga's history (increasing; for paging).
    """

    kind: str
    occurred_at: dt.datetime | None = None
    step: str | None = None
    status: str | None = None
    attempt: int | None = None
    worker: str | None = None
    operator: str | None = None
    reason: str | None = None
    error: SagaFailure | None = None
    data: Mapping[str, Any] | None = None
    sequence: int | None = None

    def _view(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "kind": self.kind,
            "occurred_at": self.occurred_at,
            "step": self.step,
            "status": self.status,
            "attempt": self.attempt,
            "worker": self.worker,
            "operator": self.operator,
            "reason": self.reason,
            "error": _failure_view(self.error),
            "data": self.data,
        }


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class SagaResult(_MappingView):
    """A saga's outcome and record: what the coordinator's operations return.

    Attributes:
        saga_id, saga_name, saga_version: Which saga.
        status: Where it is (``completed``, ``compensated``, ``compensation_failed``, or
            ``running``/``compensating`` when another worker drives it).
        step_results: Each completed step's result by step name (decoded).
        error: Why the saga failed (the original failure; None if it did not).
        failed_step: The step whose failure made the saga compensate.
        compensated_steps: Steps whose compensation ran, in the order it ran.
        compensation_error: In ``compensation_failed``, why the stuck compensation failed.
        steps: Every step as stored, in definition order.
        history: Every transition and operator action, oldest first (loaded by
            ``get_saga`` and the repair actions; empty where a run returns its outcome).
        tenant_id, user_id, correlation_id, initial_data, current_step, lease_owner,
        lease_expires_at, created_at, updated_at, completed_at: The rest of its record.
    """

    saga_id: str
    saga_name: str
    status: SagaStatus
    step_results: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    error: SagaFailure | None = None
    failed_step: str | None = None
    compensated_steps: tuple[str, ...] = ()
    compensation_error: SagaFailure | None = None
    saga_version: str | None = None
    tenant_id: str | None = None
    user_id: str | None = None
    correlation_id: str | None = None
    initial_data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    current_step: int = 0
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    steps: tuple[SagaStepResult, ...] = ()
    history: tuple[SagaEvent, ...] = ()

    def _view(self) -> dict[str, Any]:
        return {
            "saga_id": self.saga_id,
            "saga_name": self.saga_name,
            "status": self.status.value,
            "step_results": self.step_results,
            "error": _failure_view(self.error),
            "failed_step": self.failed_step,
            "compensated_steps": list(self.compensated_steps),
            "compensation_error": _failure_view(self.compensation_error),
            "saga_version": self.saga_version,
            "tenant_id": self.tenant_id,
            "user_id": self.user_id,
            "correlation_id": self.correlation_id,
            "initial_data": self.initial_data,
            "current_step": self.current_step,
            "lease_owner": self.lease_owner,
            "lease_expires_at": self.lease_expires_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "completed_at": self.completed_at,
            "steps": list(self.steps),
            "history": list(self.history),
        }

    def _outcome(self) -> tuple[Any, ...]:
        return (
            self.saga_id,
            self.saga_name,
            self.status,
            self.step_results,
            self.error,
            self.failed_step,
            self.compensated_steps,
            self.compensation_error,
        )

    def __eq__(self, other: object) -> bool:
        """Equal outcomes: same saga, status, step results and failures.

        The record's bookkeeping (times, lease, the initial data as the database gives it
        back) may differ between a live run and a read back of the same saga.
        """
        if isinstance(other, SagaResult):
            return self._outcome() == other._outcome()
        return super(SagaResult, self).__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    @property
    def succeeded(self) -> bool:
        """Whether every step completed."""
        return self.status is SagaStatus.COMPLETED


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class SagaSummary(_MappingView):
    """One saga in ``list_sagas`` and ``page_sagas`` (no steps).

    Attributes:
        saga_id, saga_name, status, tenant_id: Which saga, where it is, whose.
        error: Why it failed, if it did. failed_step: Where.
        created_at, updated_at, completed_at: When (``completed_at``: when it ended, if it
            did).
    """

    saga_id: str
    saga_name: str
    status: SagaStatus
    tenant_id: str | None = None
    error: SagaFailure | None = None
    failed_step: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None

    def _view(self) -> dict[str, Any]:
        return {
            "saga_id": self.saga_id,
            "saga_name": self.saga_name,
            "status": self.status.value,
            "tenant_id": self.tenant_id,
            "error": _failure_view(self.error),
            "failed_step": self.failed_step,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "completed_at": self.completed_at,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class SagaPage:
    """One page of ``page_sagas``: sagas newest first, and where the next page starts.

    Attributes:
        items: The sagas of this page, newest first (by creation time, then id).
        next_cursor: Pass as ``cursor=`` to get the next page; ``None`` on the last page.
            Opaque: it names the last saga of this page, so sagas created meanwhile never
            shift a page (they are newer: they sort before the first page).
    """

    items: tuple[SagaSummary, ...]
    next_cursor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"items": [...], "next_cursor": ...}`` with only JSON types."""
        return {
            "items": [item.to_dict() for item in self.items],
            "next_cursor": self.next_cursor,
        }
