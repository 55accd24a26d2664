"""The billing run saga: validate period → invoices → payments → notifications → finalize.

A period is billed in numbered attempts, each its own saga (``billing_run_id(tenant, period,
attempt)``). Attempt 1 is the run as it always was; a compensated attempt (gateway down,
period or tenant refused) can be followed by attempt n+1 with ``run_billing(..., retry=True)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.clock import Clock
from dotmac_shared.business_logic.exceptions import (
    BillingRunError,
    InvalidInputError,
    SagaNotFoundError,
)
from dotmac_shared.business_logic.operations._adapters import OutboxNotifier, SandboxPaymentGateway
from dotmac_shared.business_logic.operations._billing_partitions import (
    CHARGING,
    INVOICING,
    BillingPartitions,
)
from dotmac_shared.business_logic.operations._billing_steps import BillingRunSteps, billing_run_id
from dotmac_shared.business_logic.operations._ports import Notifier, PaymentGateway
from dotmac_shared.business_logic.sagas import (
    RetryPolicy,
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaResult,
    SagaStatus,
    SagaStep,
    StepContext,
    StepKind,
)

__all__ = [
    "BillingAttempt",
    "BillingRunSaga",
    "billing_attempts",
    "billing_saga",
    "billing_saga_input",
    "next_billing_attempt",
    "run_billing",
]

#: Builds the gateway a run charges through, from the run's session factory.
GatewayFactory = Callable[[async_sessionmaker[AsyncSession]], PaymentGateway]


class BillingRunSaga:
    """Builds the ``billing_run`` saga definition: one saga per tenant, period and attempt.

    ``initial_data`` is ``{"tenant_id": ..., "billing_period": "YYYY-MM"}``, plus
    ``"attempt": n`` from the second attempt of a period on. Invoices and charges are made
    in partitions of the customers that other worker processes may bill too (see
    :mod:`._billing_partitions`); the two steps wait for all of them. Every step is resumable:
    invoices have deterministic ids (one per customer, period and attempt), payments are
    charged with the invoice's idempotency key, notices are deduplicated in the outbox. Only
    the first two steps have compensations (cancel the run, void the invoices whose charge
    was not submitted): a charge that went through, or may have, is not undone by a later
    failure; the next attempt finishes it.
    """

    name: ClassVar[str] = "billing_run"

    @classmethod
    def create_definition(
        cls,
        *,
        gateway: GatewayFactory | None = None,
        notifier: Notifier | None = None,
        batch_size: int = 500,
        charge_concurrency: int = 16,
        step_timeout: float | None = None,
        partition_size: int = 1000,
        partition_lease_seconds: float = 30.0,
        clock: Clock | None = None,
    ) -> SagaDefinition:
        """Return the definition; the gateway defaults to the sandbox gateway.

        Invoices and charges are made partition by partition (``partition_size`` customers
        each, see :mod:`._billing_partitions`): the run's worker bills them, and so does
        every :class:`BillingPartitionWorker` running meanwhile. Give the workers the same
        gateway. A worker that dies is taken over ``partition_lease_seconds`` after its
        last renewal, on ``clock``'s time.
        """
        if batch_size < 1 or charge_concurrency < 1:
            raise BillingRunError("batch_size and charge_concurrency must be at least 1")
        if partition_size < 1:
            raise BillingRunError("partition_size must be at least 1")
        make_gateway: GatewayFactory = gateway or SandboxPaymentGateway
        outbox = notifier or OutboxNotifier()

        def build(factory: async_sessionmaker[AsyncSession]) -> BillingRunSteps:
            return BillingRunSteps(
                factory,
                make_gateway(factory),
                outbox,
                batch_size=batch_size,
                charge_concurrency=charge_concurrency,
            )

        def steps(ctx: StepContext) -> BillingRunSteps:
            return build(ctx.session_factory)

        def partitions(ctx: StepContext) -> BillingPartitions:
            return BillingPartitions(
                ctx.session_factory,
                steps=build,
                lease_seconds=partition_lease_seconds,
                clock=clock,
            )

        def period(ctx: StepContext) -> str:
            return str(ctx.step_results["validate_period"]["billing_period"])

        def tenant(ctx: StepContext) -> str:
            tenant_id = ctx.data.get("tenant_id", ctx.context.tenant_id)
            if not isinstance(tenant_id, str) or not tenant_id:
                raise BillingRunError("initial_data needs a tenant_id", tenant_id=None)
            return tenant_id

        def attempt(ctx: StepContext) -> int:
            number = ctx.data.get("attempt", 1)
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise InvalidInputError(
                    f"attempt must be a whole number from 1, got {number!r}", field="attempt"
                )
            return number

        async def validate(ctx: StepContext) -> dict[str, Any]:
            return await steps(ctx).validate_period(
                tenant(ctx), ctx.data.get("billing_period"), attempt=attempt(ctx)
            )

        async def cancel(ctx: StepContext) -> None:
            if ctx.result is not None:
                await steps(ctx).cancel_run(str(ctx.result["billing_run_id"]))

        async def invoices(ctx: StepContext) -> dict[str, Any]:
            # Partitions are cut, then billed by this worker and any others; this waits for all.
            number, period_text = attempt(ctx), period(ctx)
            carried_over = await steps(ctx).carry_over(tenant(ctx), period_text, attempt=number)
            work = partitions(ctx)
            await work.create(
                tenant(ctx), period_text, attempt=number, partition_size=partition_size
            )
            counts = await work.bill_stage(
                billing_run_id(tenant(ctx), period_text, number), INVOICING
            )
            result = {key: counts[key] for key in ("invoices_created", "customers_seen")}
            if number > 1:
                result["invoices_carried_over"] = carried_over
            return result

        async def void(ctx: StepContext) -> dict[str, Any]:
            run_id = billing_run_id(tenant(ctx), period(ctx), attempt(ctx))
            await partitions(ctx).cancel(run_id)  # no worker invoices or charges after this
            voided = await steps(ctx).void_open_invoices(
                tenant(ctx), period(ctx), attempt=attempt(ctx)
            )
            return {"voided": voided}

        async def payments(ctx: StepContext) -> dict[str, Any]:
            run_id = billing_run_id(tenant(ctx), period(ctx), attempt(ctx))
            work = partitions(ctx)
            await work.open_charging(run_id)
            counts = await work.bill_stage(run_id, CHARGING)
            return {key: counts[key] for key in ("paid", "declined", "failed")}

        async def notices(ctx: StepContext) -> dict[str, Any]:
            return await steps(ctx).send_notifications(
                tenant(ctx), period(ctx), attempt=attempt(ctx)
            )

        async def finalize(ctx: StepContext) -> dict[str, Any]:
            return await steps(ctx).finalize(tenant(ctx), period(ctx), attempt=attempt(ctx))

        forward_retry = RetryPolicy(max_attempts=5, initial_delay=0.1, max_delay=5.0)
        return SagaDefinition(
            name=cls.name,
            steps=[
                SagaStep(name="validate_period", execute=validate, compensate=cancel, timeout=30.0),
                SagaStep(
                    name="generate_invoices",
                    execute=invoices,
                    compensate=void,
                    timeout=step_timeout,
                ),
                # The charge is the go/no-go: once customers are charged, the run only goes
                # forward; notices and the report are retried, never compensated.
                SagaStep(
                    name="process_payments",
                    execute=payments,
                    timeout=step_timeout,
                    kind=StepKind.PIVOT,
                ),
                SagaStep(
                    name="send_notifications",
                    execute=notices,
                    timeout=step_timeout,
                    kind=StepKind.RETRIABLE,
                    retry=forward_retry,
                ),
                SagaStep(
                    name="finalize",
                    execute=finalize,
                    timeout=step_timeout,
                    kind=StepKind.RETRIABLE,
                    retry=forward_retry,
                ),
            ],
        )


@dataclasses.dataclass(frozen=True, slots=True)
class BillingAttempt:
    """One attempt at billing a tenant's period.

    Attributes:
        number: 1 for the first attempt, then 2, 3, ...
        saga_id: The attempt's saga id, ``billing_run_id(tenant, period, number)``.
        status: Its saga's status (a :class:`SagaStatus` value), or ``None`` if it has not
            been started yet.
    """

    number: int
    saga_id: str
    status: str | None


async def billing_saga(
    coordinator: SagaCoordinator, tenant_id: str, saga_id: str
) -> SagaResult | None:
    """The record of a billing attempt's saga (``get_saga``), or ``None`` if it never started.

    The one place billing code reads a saga, so that the tenant travels with every read:
    another tenant's saga of that id is not found (the coordinator scopes reads by tenant).
    """
    try:
        return await coordinator.get_saga(saga_id, tenant_id=tenant_id)
    except SagaNotFoundError:
        return None


async def billing_attempts(
    coordinator: SagaCoordinator, tenant_id: str, billing_period: str
) -> list[BillingAttempt]:
    """Every started attempt of a tenant's billing for a period, the first first.

    Attempts are numbered without gaps (attempt n+1 starts only after attempt n), so this
    reads attempt 1, 2, ... until one is missing.
    """
    attempts: list[BillingAttempt] = []
    while True:
        saga_id = billing_run_id(tenant_id, str(billing_period), len(attempts) + 1)
        saga = await billing_saga(coordinator, tenant_id, saga_id)
        if saga is None:
            return attempts
        attempts.append(BillingAttempt(len(attempts) + 1, saga_id, str(saga["status"])))


def next_billing_attempt(
    attempts: Sequence[BillingAttempt], tenant_id: str, billing_period: str, *, retry: bool
) -> BillingAttempt:
    """Which attempt a run drives: the latest one, or with ``retry`` a new one after it.

    Args:
        attempts: What :func:`billing_attempts` returned.
        tenant_id: The tenant billed.
        billing_period: The period, ``YYYY-MM``.
        retry: Start a new attempt; allowed only when the latest attempt ended compensated.

    Returns:
        The latest attempt (attempt 1, not started, if there is none); with ``retry``, the
        next attempt, not started.

    Raises:
        BillingRunError: ``retry`` while the period was never billed, while its latest
            attempt completed, is still running or compensating, or waits for a person
            (``compensation_failed``); ``metadata["reason"]`` says which.
    """
    period = str(billing_period)
    if not retry:
        return (
            attempts[-1] if attempts else BillingAttempt(1, billing_run_id(tenant_id, period), None)
        )
    if not attempts:
        raise BillingRunError(
            f"billing period {period} of tenant {tenant_id} was never run: nothing to retry; "
            "run it without retry",
            tenant_id=tenant_id,
            metadata={"reason": "not_started", "billing_period": period},
        )
    latest = attempts[-1]
    if latest.status != SagaStatus.COMPENSATED:
        hints: dict[str | None, str] = {
            SagaStatus.COMPLETED.value: "completed: the period is billed",
            SagaStatus.COMPENSATION_FAILED.value: (
                "waiting for a person (compensation_failed): resume its saga first"
            ),
            SagaStatus.INCIDENT.value: (
                "waiting for a person (incident: customers were charged): retry or resolve "
                "its step first"
            ),
        }
        hint = hints.get(latest.status, "still running: resume it instead of retrying")
        raise BillingRunError(
            f"cannot retry billing period {period} of tenant {tenant_id}: attempt "
            f"{latest.number} ({latest.saga_id}) is {hint}",
            billing_run_id=latest.saga_id,
            tenant_id=tenant_id,
            metadata={"reason": f"latest_attempt_{latest.status}", "billing_period": period},
        )
    number = latest.number + 1
    return BillingAttempt(number, billing_run_id(tenant_id, period, number), None)


async def run_billing(
    session_factory: async_sessionmaker[AsyncSession],
    tenant_id: str,
    billing_period: str,
    *,
    coordinator: SagaCoordinator | None = None,
    user_id: str | None = None,
    retry: bool = False,
    **definition_options: Any,
) -> SagaResult:
    """Run (or resume, or return the stored result of) the billing run of one period.

    The saga id is ``billing_run_id(tenant_id, billing_period, attempt)``, so running it
    again after a crash resumes the same attempt, and after it finished returns its result.
    Without ``retry`` the latest attempt is driven (attempt 1 if there is none); a
    compensated attempt returns its stored outcome. With ``retry=True`` the next attempt
    starts: a compensated attempt's void invoices stay void, and no customer is charged
    twice across attempts (see :mod:`.billing_steps`).

    Example:
        >>> outcome = await run_billing(factory, "tenant123", "2026-10")  # doctest: +SKIP
        >>> outcome["status"]  # doctest: +SKIP
        'compensated'
        >>> await run_billing(factory, "tenant123", "2026-10", retry=True)  # doctest: +SKIP

    Returns:
        The saga outcome (``status``, ``step_results`` with the ``finalize`` report, ...).

    Raises:
        BillingRunError: ``retry`` when the latest attempt did not end compensated (see
            :func:`next_billing_attempt`).
    """
    if coordinator is None:
        coordinator = SagaCoordinator(session_factory)
    if BillingRunSaga.name not in coordinator.definitions:
        # Partitions are held as long as the run's saga: a dead worker's are taken over
        # when its saga is.
        definition_options.setdefault("partition_lease_seconds", coordinator.lease_seconds)
        definition_options.setdefault("clock", coordinator.clock)
        coordinator.register_saga(BillingRunSaga.create_definition(**definition_options))
    # Check-then-act is safe here: the attempt read is final (compensated) or its successor
    # id is what any concurrent retry computes too, and the saga store lets one caller
    # create a saga id; the other drives or replays that same attempt.
    attempt = next_billing_attempt(
        await billing_attempts(coordinator, tenant_id, str(billing_period)),
        tenant_id,
        str(billing_period),
        retry=retry,
    )
    return await coordinator.execute_saga(
        saga_name=BillingRunSaga.name,
        context=SagaContext(saga_id=attempt.saga_id, tenant_id=tenant_id, user_id=user_id),
        initial_data=billing_saga_input(tenant_id, billing_period, attempt),
    )


def billing_saga_input(
    tenant_id: str, billing_period: str, attempt: BillingAttempt
) -> dict[str, Any]:
    """The initial data of ``attempt``'s saga (the same for every start of that attempt).

    Attempt 1's data stays what it always was, without an ``attempt`` key: a stored saga of
    it matches, so a repeat start resumes or replays it instead of being refused.
    """
    initial_data: dict[str, Any] = {"tenant_id": tenant_id, "billing_period": billing_period}
    if attempt.number > 1:
        initial_data["attempt"] = attempt.number
    return initial_data
