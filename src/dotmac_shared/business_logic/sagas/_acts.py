"""The coordinator's acts: run one step's action or compensation, and say what came of it.

Each act builds the step's :class:`StepContext` from the saga's record (its initial data and
the results of the steps before it), hands the step to :func:`run_step`, and turns the outcome
into the :mod:`decide <dotmac_shared.business_logic.sagas._decide>` event the coordinator
feeds back to the state machine. Failures of the step become events, never exceptions.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.clock import Clock
from dotmac_shared.business_logic.exceptions import SagaDefinitionError, SagaTimeoutError
from dotmac_shared.business_logic.observability._log import get_logger
from dotmac_shared.business_logic.sagas._context import SagaContext, StepContext
from dotmac_shared.business_logic.sagas._data import decoded, step_result
from dotmac_shared.business_logic.sagas._decide import (
    CompensationFailed,
    CompensationSucceeded,
    DeadlinePassed,
    Event,
    StepFailed,
    StepSucceeded,
)
from dotmac_shared.business_logic.sagas._definition import SagaDefinition, SagaStep
from dotmac_shared.business_logic.sagas._results import SagaFailure
from dotmac_shared.business_logic.sagas._runner import run_step
from dotmac_shared.business_logic.sagas._store import SagaRecord, StepRecord

__all__ = ["Save", "compensate", "execute"]

logger = get_logger(__name__)

#: Writes a saga's record and some of its steps, fenced by the lease (``LeaseKeeper.save``).
Save = Callable[[SagaRecord, Sequence[StepRecord]], Awaitable[bool]]


async def execute(
    record: SagaRecord,
    definition: SagaDefinition,
    index: int,
    *,
    session_factory: async_sessionmaker[AsyncSession],
    clock: Clock,
) -> Event:
    """Run step ``index``'s action; what came of it.

    Args:
        record: The saga, with step ``index`` started.
        definition: Its definition.
        index: The step.
        session_factory: Given to the step in its context.
        clock: Where the saga's deadline is compared.
    """
    step = definition.steps[index]
    state = record.steps[step.name]
    data, results = _accumulated(record, index, definition)
    context = SagaContext.from_dict(record.context)

    def deadline() -> float | None:
        return _remaining(record, clock)

    try:
        outcome = await run_step(
            saga_id=record.saga_id,
            saga_name=record.saga_name,
            step=step,
            phase="execute",
            policy=step.retry,
            make_context=_contexts(
                record, step, state, context, data, results, state.attempts - 1, session_factory
            ),
            action=step.action,
            remaining=(lambda: None) if _after_pivot(definition, index) else deadline,
        )
        # Encoded (and refused if it cannot be stored) here, so a result that cannot be
        # stored fails its step before the saga records the step as completed.
        result = step_result(outcome, step.name)
    except Exception as exc:  # any failure of the step leads to compensation
        failure = SagaFailure.from_exception(exc, step.name)
        logger.warning(
            "saga %s step %s failed: %s: %s",
            record.saga_id,
            step.name,
            failure.code,
            failure.message,
        )
        if isinstance(exc, SagaTimeoutError):
            return DeadlinePassed(index, failure)
        return StepFailed(index, failure)
    return StepSucceeded(index, result)


async def compensate(
    record: SagaRecord,
    definition: SagaDefinition,
    index: int,
    *,
    session_factory: async_sessionmaker[AsyncSession],
    save: Save,
) -> Event:
    """Run step ``index``'s compensation; what came of it.

    Args:
        record: The saga, compensating step ``index``.
        definition: Its definition.
        index: The step.
        session_factory: Given to the step in its context.
        save: How each try is counted durably before it runs.
    """
    step = definition.steps[index]
    state = record.steps[step.name]
    data, results = _accumulated(record, index, definition)
    try:
        await run_step(
            saga_id=record.saga_id,
            saga_name=record.saga_name,
            step=step,
            phase="compensate",
            policy=step.compensation_retry,
            make_context=_contexts(
                record,
                step,
                state,
                SagaContext.from_dict(record.context),
                data,
                results,
                state.compensation_attempts - 1,
                session_factory,
                result=decoded(state.result) if state.result is not None else None,
            ),
            action=_counted(record, step, state, save),
            remaining=lambda: None,
        )
    except Exception as exc:  # recorded; the saga then waits for a person
        failure = SagaFailure.from_exception(exc, step.name)
        logger.error(
            "saga %s: compensation of %s failed; a person must look: %s",
            record.saga_id,
            step.name,
            failure.message,
        )
        return CompensationFailed(index, failure)
    return CompensationSucceeded(index)


def _after_pivot(definition: SagaDefinition, index: int) -> bool:
    """Whether step ``index`` comes after the pivot.

    The saga's deadline exists to turn it back (compensate); past the pivot it cannot go
    back, so there only each step's own ``timeout`` bounds it (a person's ``retry_step``
    after the deadline can still succeed).
    """
    pivot = definition.pivot_index
    return pivot is not None and index > pivot


def _remaining(record: SagaRecord, clock: Clock) -> float | None:
    """Seconds left before the saga's deadline; None without one."""
    if record.deadline_at is None:
        return None
    return (record.deadline_at - clock.now()).total_seconds()


def _accumulated(
    record: SagaRecord, upto: int, definition: SagaDefinition
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The data a step sees (initial data and results before it), and those results by step."""
    data = dict(record.initial_data)
    results: dict[str, dict[str, Any]] = {}
    for step in definition.steps[:upto]:
        done = record.steps.get(step.name)
        if done is not None and done.result is not None:
            result = decoded(done.result)
            data.update(result)
            results[step.name] = result
    return data, results


def _contexts(
    record: SagaRecord,
    step: SagaStep,
    state: StepRecord,
    context: SagaContext,
    data: Mapping[str, Any],
    results: Mapping[str, Mapping[str, Any]],
    attempts_before: int,
    session_factory: async_sessionmaker[AsyncSession],
    result: Mapping[str, Any] | None = None,
) -> Callable[[int], StepContext]:
    """The step context of each try (numbered from 1 within this run of tries)."""

    def make(attempt: int) -> StepContext:
        return StepContext(
            saga_id=record.saga_id,
            step_name=step.name,
            step_index=state.index,
            idempotency_key=f"{record.saga_id}:{step.name}",
            data=data,
            context=context,
            attempt=attempts_before + attempt,
            session_factory=session_factory,
            result=result,
            step_results=results,
        )

    return make


def _counted(
    record: SagaRecord, step: SagaStep, state: StepRecord, save: Save
) -> Callable[[StepContext], Awaitable[Any]]:
    """``step``'s compensation, each retry counted durably in the step before it runs."""
    compensate = step.compensate
    assert compensate is not None

    async def run(ctx: StepContext) -> Any:
        if ctx.attempt > state.compensation_attempts:
            state.compensation_attempts = ctx.attempt
            # Shielded: a timeout of the try must not cut a write that may be batched
            # with other sagas' (see SqlSagaStore); the try is timed out right after.
            await asyncio.shield(save(record, [state]))
        outcome = compensate(ctx)
        if not inspect.isawaitable(outcome):
            raise SagaDefinitionError(
                f"step {step.name}: compensate must be async (returned {type(outcome).__name__})",
                saga_id=record.saga_id,
                failed_step=step.name,
            )
        return await outcome

    return run
