"""Running one step's action or compensation: retries, time limits, a span, a metric.

The runner knows nothing of the store or the state machine: it calls the step's function
with a fresh :class:`StepContext` per try, retries per the step's :class:`RetryPolicy`
(tenacity), bounds each try by the step's ``timeout`` and the saga's deadline, and reports
what came out (a value, or the exception of the last try).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from dotmac_shared.business_logic.exceptions import SagaDefinitionError, SagaTimeoutError
from dotmac_shared.business_logic.observability._telemetry import SAGA_STEP_DURATION, start_span
from dotmac_shared.business_logic.sagas._context import StepContext
from dotmac_shared.business_logic.sagas._definition import RetryPolicy, SagaStep

__all__ = ["Phase", "run_step"]

Phase = Literal["execute", "compensate"]


async def run_step(
    *,
    saga_id: str,
    saga_name: str,
    step: SagaStep,
    phase: Phase,
    policy: RetryPolicy,
    make_context: Callable[[int], StepContext],
    action: Callable[[StepContext], Any],
    remaining: Callable[[], float | None],
) -> Any:
    """Run ``action`` with retries; its value, or the last try's exception.

    Args:
        saga_id: The saga (for spans, metrics and errors).
        saga_name: Its type.
        step: The step.
        phase: ``execute`` or ``compensate``.
        policy: How to retry.
        make_context: The step context of try n (numbered from 1 within this run).
        action: The step's function (must return an awaitable).
        remaining: Seconds left before the saga's deadline, None without one (only the
            ``execute`` phase is bounded by it).

    Raises:
        SagaTimeoutError: The saga's deadline passed (never retried).
        SagaDefinitionError: ``action`` is not async (never retried).
        Exception: Whatever the last try raised.
    """
    run = _Try(saga_id, saga_name, step, phase, make_context, action, remaining)
    if policy.max_attempts == 1:  # nothing to retry: no retry machinery
        return await run(1)
    retrying = policy.retrying()
    retrying.retry = _not_timeout(retrying.retry)
    async for attempt in retrying:
        with attempt:
            return await run(attempt.retry_state.attempt_number)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


class _Try:
    """One try of a step's function: deadline and timeout checks, a span, a duration metric."""

    def __init__(
        self,
        saga_id: str,
        saga_name: str,
        step: SagaStep,
        phase: Phase,
        make_context: Callable[[int], StepContext],
        action: Callable[[StepContext], Any],
        remaining: Callable[[], float | None],
    ) -> None:
        self.saga_id = saga_id
        self.saga_name = saga_name
        self.step = step
        self.phase = phase
        self.make_context = make_context
        self.action = action
        self.remaining = remaining

    async def __call__(self, number: int) -> Any:
        step, phase = self.step, self.phase
        remaining = self.remaining() if phase == "execute" else None
        if remaining is not None and remaining <= 0:
            raise SagaTimeoutError(
                f"saga {self.saga_id} ran past its timeout",
                saga_id=self.saga_id,
                saga_name=self.saga_name,
                failed_step=step.name,
            )
        limit = _min_timeout(step.timeout, remaining)
        started = time.perf_counter()
        outcome = "error"
        with start_span(
            f"saga.step.{phase}",
            {
                "dotmac.saga.id": self.saga_id,
                "dotmac.saga.step": step.name,
                "dotmac.saga.attempt": number,
            },
        ):
            try:
                awaitable = self.action(self.make_context(number))
                if not inspect.isawaitable(awaitable):
                    raise SagaDefinitionError(
                        f"step {step.name}: {phase} must be async (returned "
                        f"{type(awaitable).__name__})",
                        saga_id=self.saga_id,
                        failed_step=step.name,
                    )
                value = await self._bounded(awaitable, limit, remaining)
                outcome = "ok"
            finally:
                SAGA_STEP_DURATION.record(
                    (time.perf_counter() - started) * 1000,
                    {
                        "saga": self.saga_name,
                        "step": step.name,
                        "phase": phase,
                        "outcome": outcome,
                    },
                )
        return value

    async def _bounded(
        self, awaitable: Awaitable[Any], limit: float | None, remaining: float | None
    ) -> Any:
        try:
            async with asyncio.timeout(limit) as scope:
                value = await awaitable
            _discard_late(scope)
        except TimeoutError as exc:
            if remaining is not None and limit == remaining:
                raise SagaTimeoutError(
                    f"saga {self.saga_id} ran past its timeout in {self.step.name}",
                    saga_id=self.saga_id,
                    saga_name=self.saga_name,
                    failed_step=self.step.name,
                ) from exc
            raise TimeoutError(
                f"step {self.step.name} {self.phase} took longer than {limit}s"
            ) from exc
        return value


def _discard_late(scope: asyncio.Timeout) -> None:
    """Refuse the result of a step that outlived its cancellation or its time limit.

    A step that catches ``CancelledError`` and returns, or that blocks the event loop (a
    synchronous sleep) past its timeout, still hands back a value; it must not be recorded as
    completed. Cancelled (the lease was lost, or the caller gave up): cancellation goes on.
    Past the time limit: the try counts as timed out, and is retried or fails per its policy.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError("the step ignored its cancellation; its result is discarded")
    when = scope.when()
    if scope.expired() or (when is not None and asyncio.get_running_loop().time() >= when):
        raise TimeoutError("the step returned after its time limit; its result is discarded")


def _min_timeout(a: float | None, b: float | None) -> float | None:
    values = [v for v in (a, b) if v is not None]
    return min(values) if values else None


def _not_timeout(predicate: Any) -> Any:
    """Never retry past the saga's deadline, nor a programming error in the step's shape."""

    def check(retry_state: Any) -> bool:
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            error = outcome.exception()
            # Cancellation (lease lost, caller gone) is never a failed try to retry.
            if not isinstance(error, Exception) or isinstance(
                error, SagaTimeoutError | SagaDefinitionError
            ):
                return False
        return bool(predicate(retry_state))

    return check
