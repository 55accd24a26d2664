"""Saga definitions: ordered steps, each with its compensation, timeout and retry policy."""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from dotmac_shared.business_logic.exceptions import SagaDefinitionError
from dotmac_shared.business_logic.sagas._context import StepContext

__all__ = [
    "NOTHING_TO_UNDO",
    "RETRIABLE_RETRY",
    "RetryPolicy",
    "SagaDefinition",
    "SagaStep",
    "StepAction",
    "StepHandler",
    "StepKind",
]

#: An async callable given the step's context, returning the step's result (a dict).
StepAction = Callable[[StepContext], Awaitable[Mapping[str, Any] | None]]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,127}\Z")


class StepKind(enum.StrEnum):
    """What a step promises about undoing it (Richardson's pivot, compensatable, retriable).

    - ``compensatable`` (the default): it can be undone; it comes before the pivot.
    - ``pivot``: the saga's go/no-go step (at most one). If it fails, the steps before it
      are compensated; once it succeeds the saga can only go forward.
    - ``retriable``: it comes after the pivot and may fail only transiently: it is retried
      (its ``retry`` policy, with backoff) and never compensated. Past its retry budget the
      saga stops in ``incident`` for a person to act on.
    """

    COMPENSATABLE = "compensatable"
    PIVOT = "pivot"
    RETRIABLE = "retriable"


async def _nothing_to_undo(ctx: StepContext) -> None:
    """A compensation that does nothing: the step changes nothing that could be undone."""


#: The compensation of a compensatable step that changes nothing (a validation, a read):
#: declaring it says so explicitly, where a missing compensation in a typed saga is refused.
#: It never runs: the step is marked compensated, as a step without a compensation is.
NOTHING_TO_UNDO: StepAction = _nothing_to_undo


@runtime_checkable
class StepHandler(Protocol):
    """A class form of a step: ``execute`` and, optionally, ``compensate``."""

    async def execute(self, ctx: StepContext) -> Mapping[str, Any] | None:
        """Do the step's work; return its result."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often to try a step (or compensation), and how long to wait between tries.

    Args:
        max_attempts: Tries in all, including the first.
        initial_delay: Seconds before the first retry; doubles each time (exponential).
        max_delay: Cap on the wait between tries.
        jitter: Up to this many random seconds added to each wait (spreads retries out).
        retry_on: Exception types worth retrying; anything else fails at once.
    """

    max_attempts: int = 1
    initial_delay: float = 0.05
    max_delay: float = 2.0
    jitter: float = 0.05
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise SagaDefinitionError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.jitter < 0:
            raise SagaDefinitionError("retry delays must not be negative")

    def retrying(self) -> AsyncRetrying:
        """A tenacity retrier implementing this policy (re-raises the last error)."""
        retry_on = self.retry_on
        return AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=self.initial_delay, max=self.max_delay, jitter=self.jitter
            ),
            retry=retry_if_exception(lambda exc: isinstance(exc, retry_on)),
            reraise=True,
        )


#: The default retry policy of a step (the very object: a retriable step left at it gets
#: :data:`RETRIABLE_RETRY`).
_SINGLE_TRY = RetryPolicy()
#: The retry budget of a retriable step that declares none: tries with exponential backoff.
RETRIABLE_RETRY = RetryPolicy(max_attempts=5, initial_delay=0.5, max_delay=30.0, jitter=0.5)


@dataclasses.dataclass(frozen=True, slots=True)
class SagaStep:
    """One step of a saga.

    Args:
        name: Unique within the saga; lowercase letters, digits and underscores.
        execute: The step's work (an async callable taking a :class:`StepContext`), or an
            object with ``execute`` and optionally ``compensate`` methods.
        compensate: Undoes ``execute``. Must tolerate running when ``execute`` had no effect
            (a step that failed or whose worker died may be compensated). ``None``: nothing
            to undo.
        timeout: Seconds one attempt may take.
        retry: Retry policy of ``execute``.
        compensation_retry: Retry policy of ``compensate`` (retried by default).
        kind: What the step promises about undoing it (:class:`StepKind`); checked by
            :class:`SagaDefinition`. A ``retriable`` step's ``retry`` policy is its budget
            of tries (with exponential backoff) before the saga stops in ``incident``
            (:data:`RETRIABLE_RETRY` if it declares none).

    Example:
        >>> async def reserve(ctx: StepContext) -> dict[str, str]:
        ...     return {"reservation": ctx.idempotency_key}
        >>> step = SagaStep(name="reserve", execute=reserve, timeout=5.0)
    """

    name: str
    execute: StepAction | StepHandler
    compensate: StepAction | None = None
    timeout: float | None = None
    retry: RetryPolicy = _SINGLE_TRY
    compensation_retry: RetryPolicy = RetryPolicy(max_attempts=3)
    kind: StepKind = StepKind.COMPENSATABLE

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SagaDefinitionError(
                f"step name {self.name!r} must be lowercase letters, digits and underscores"
            )
        try:
            object.__setattr__(self, "kind", StepKind(self.kind))
        except ValueError:
            known = ", ".join(k.value for k in StepKind)
            raise SagaDefinitionError(
                f"step {self.name}: unknown kind {self.kind!r}; expected one of: {known}",
                metadata={"step": self.name},
            ) from None
        if self.kind is StepKind.RETRIABLE and self.retry is _SINGLE_TRY:
            # A retriable step that declares no policy gets a real budget (one that
            # declares a policy keeps it, even a single try).
            object.__setattr__(self, "retry", RETRIABLE_RETRY)
        if isinstance(self.execute, StepHandler):
            handler = self.execute
            object.__setattr__(self, "execute", handler.execute)
            undo = getattr(handler, "compensate", None)
            if self.compensate is None and callable(undo):
                object.__setattr__(self, "compensate", undo)
        if not callable(self.execute):
            raise SagaDefinitionError(f"step {self.name}: execute must be an async callable")
        if self.compensate is not None and not callable(self.compensate):
            raise SagaDefinitionError(f"step {self.name}: compensate must be an async callable")
        if self.timeout is not None and self.timeout <= 0:
            raise SagaDefinitionError(f"step {self.name}: timeout must be positive")

    @property
    def action(self) -> StepAction:
        """The execute callable (a handler object is unwrapped at construction)."""
        action: StepAction = self.execute  # type: ignore[assignment]
        return action

    @property
    def compensable(self) -> bool:
        """Whether the step has anything to undo (a compensation, not NOTHING_TO_UNDO)."""
        return self.compensate is not None and self.compensate is not NOTHING_TO_UNDO


@dataclasses.dataclass(frozen=True, slots=True)
class SagaDefinition:
    """A named, versioned sequence of steps.

    Args:
        name: How sagas of this kind are started (``execute_saga(saga_name=...)``).
        steps: Run in this order; compensated in reverse.
        timeout: Seconds the whole saga may take; past it, the saga is compensated. It
            bounds the steps up to the pivot: after the pivot only each step's own
            ``timeout`` does (the saga cannot go back any more).
        version: Recorded with every execution, for audits of old runs.

    A saga with a pivot step is *typed*, and its kinds are checked (a
    :class:`SagaDefinitionError` names the step and the rule): at most one pivot; every
    step before it compensatable, with a compensation (:data:`NOTHING_TO_UNDO` for a step
    that changes nothing); every step after it retriable, without a compensation (it is
    never compensated). A saga without a pivot is untyped: every step is compensatable,
    and a step without a compensation has nothing to undo (the behaviour before kinds).
    """

    name: str
    steps: Sequence[SagaStep]
    timeout: float | None = None
    version: str = "1.0.0"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SagaDefinitionError(
                f"saga name {self.name!r} must be lowercase letters, digits and underscores"
            )
        object.__setattr__(self, "steps", tuple(self.steps))
        if not self.steps:
            raise SagaDefinitionError(f"saga {self.name} has no steps", saga_name=self.name)
        seen: set[str] = set()
        for step in self.steps:
            if not isinstance(step, SagaStep):
                raise SagaDefinitionError(
                    f"saga {self.name}: steps must be SagaStep, got {type(step).__name__}",
                    saga_name=self.name,
                )
            if step.name in seen:
                raise SagaDefinitionError(
                    f"saga {self.name}: duplicate step name {step.name!r}", saga_name=self.name
                )
            seen.add(step.name)
        if self.timeout is not None and self.timeout <= 0:
            raise SagaDefinitionError(f"saga {self.name}: timeout must be positive")
        self._check_kinds()

    def _check_kinds(self) -> None:
        """Refuse step kinds out of Richardson's order: compensatable, pivot, retriable."""
        pivots = [i for i, step in enumerate(self.steps) if step.kind is StepKind.PIVOT]
        if len(pivots) > 1:
            names = [self.steps[i].name for i in pivots]
            raise SagaDefinitionError(
                f"saga {self.name} has {len(pivots)} pivot steps ({', '.join(names)}); "
                "at most one step may be the pivot",
                saga_name=self.name,
                metadata={"rule": "one_pivot", "steps": names},
            )
        pivot = pivots[0] if pivots else None
        for index, step in enumerate(self.steps):
            rule: str | None = None
            if step.kind is StepKind.RETRIABLE and (pivot is None or index < pivot):
                rule, why = "retriable_after_pivot", "a retriable step must come after the pivot"
            elif step.kind is StepKind.COMPENSATABLE and pivot is not None and index > pivot:
                rule, why = (
                    "compensatable_before_pivot",
                    "a compensatable step must come before the pivot (after it, the saga "
                    "can only go forward: declare it retriable)",
                )
            elif step.kind is StepKind.COMPENSATABLE and pivot is not None and not step.compensate:
                rule, why = (
                    "compensation_required",
                    "a compensatable step needs a compensation (NOTHING_TO_UNDO if it "
                    "changes nothing)",
                )
            elif step.kind is StepKind.RETRIABLE and step.compensate is not None:
                rule, why = "retriable_not_compensated", "a retriable step is never compensated"
            if rule is not None:
                raise SagaDefinitionError(
                    f"saga {self.name}, step {step.name} ({step.kind}): {why}",
                    saga_name=self.name,
                    failed_step=step.name,
                    metadata={"rule": rule, "step": step.name, "kind": step.kind.value},
                )

    @property
    def pivot_index(self) -> int | None:
        """Position of the pivot step; None in an untyped saga."""
        for index, step in enumerate(self.steps):
            if step.kind is StepKind.PIVOT:
                return index
        return None

    def step(self, name: str) -> SagaStep:
        """Return the step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        raise SagaDefinitionError(f"saga {self.name} has no step {name!r}", saga_name=self.name)
