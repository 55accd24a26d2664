"""The billing run saga: validate period → invoices → payments → notifications → finalize."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.exceptions import BillingRunError
from dotmac_shared.business_logic.operations.adapters import OutboxNotifier, SandboxPaymentGateway
from dotmac_shared.business_logic.operations.billing_steps import BillingRunSteps, billing_run_id
from dotmac_shared.business_logic.operations.ports import Notifier, PaymentGateway
from dotmac_shared.business_logic.sagas import (
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStep,
    StepContext,
)

__all__ = ["BillingRunSaga", "run_billing"]

#: Builds the gateway a run charges through, from the run's session factory.
GatewayFactory = Callable[[async_sessionmaker[AsyncSession]], PaymentGateway]


class BillingRunSaga:
    """Builds the ``billing_run`` saga definition: one saga per tenant and billing period.

    ``initial_data`` is ``{"tenant_id": ..., "billing_period": "YYYY-MM"}``. Every step is
    resumable: invoices have deterministic ids (one per customer and period), payments are
    charged with the invoice's idempotency key, notices are deduplicated in the outbox. Only
    the first two steps have compensations (cancel the run, void unpaid invoices): a charge
    that went through is not undone by a later failure.
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
    ) -> SagaDefinition:
        """Return the definition; the gateway defaults to the sandbox gateway."""
        if batch_size < 1 or charge_concurrency < 1:
            raise BillingRunError("batch_size and charge_concurrency must be at least 1")
        make_gateway: GatewayFactory = gateway or SandboxPaymentGateway
        outbox = notifier or OutboxNotifier()

        def steps(ctx: StepContext) -> BillingRunSteps:
            return BillingRunSteps(
                ctx.session_factory,
                make_gateway(ctx.session_factory),
                outbox,
                batch_size=batch_size,
                charge_concurrency=charge_concurrency,
            )

        def period(ctx: StepContext) -> str:
            return str(ctx.step_results["validate_period"]["billing_period"])

        def tenant(ctx: StepContext) -> str:
            tenant_id = ctx.data.get("tenant_id", ctx.context.tenant_id)
            if not isinstance(tenant_id, str) or not tenant_id:
                raise BillingRunError("initial_data needs a tenant_id", tenant_id=None)
            return tenant_id

        async def validate(ctx: StepContext) -> dict[str, Any]:
            return await steps(ctx).validate_period(tenant(ctx), ctx.data.get("billing_period"))

        async def cancel(ctx: StepContext) -> None:
            if ctx.result is not None:
                await steps(ctx).cancel_run(str(ctx.result["billing_run_id"]))

        async def invoices(ctx: StepContext) -> dict[str, Any]:
            return await steps(ctx).generate_invoices(tenant(ctx), period(ctx))

        async def void(ctx: StepContext) -> dict[str, Any]:
            return {"voided": await steps(ctx).void_open_invoices(tenant(ctx), period(ctx))}

        async def payments(ctx: StepContext) -> dict[str, Any]:
            return await steps(ctx).process_payments(tenant(ctx), period(ctx))

        async def notices(ctx: StepContext) -> dict[str, Any]:
            return await steps(ctx).send_notifications(tenant(ctx), period(ctx))

        async def finalize(ctx: StepContext) -> dict[str, Any]:
            return await steps(ctx).finalize(tenant(ctx), period(ctx))

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
                SagaStep(name="process_payments", execute=payments, timeout=step_timeout),
                SagaStep(name="send_notifications", execute=notices, timeout=step_timeout),
                SagaStep(name="finalize", execute=finalize, timeout=step_timeout),
            ],
        )


async def run_billing(
    db_session_factory: async_sessionmaker[AsyncSession],
    tenant_id: str,
    billing_period: str,
    *,
    coordinator: SagaCoordinator | None = None,
    user_id: str | None = None,
    **definition_options: Any,
) -> dict[str, Any]:
    """Run (or resume, or return the stored result of) the billing run of one period.

    The saga id is ``billing_run_id(tenant_id, billing_period)``, so running it again after
    a crash resumes the same run, and after it finished returns its result.

    Returns:
        The saga outcome (``status``, ``step_results`` with the ``finalize`` report, ...).
    """
    if coordinator is None:
        coordinator = SagaCoordinator(db_session_factory)
    if BillingRunSaga.name not in coordinator.definitions:
        coordinator.register_saga(BillingRunSaga.create_definition(**definition_options))
    return await coordinator.execute_saga(
        saga_name=BillingRunSaga.name,
        context=SagaContext(
            saga_id=billing_run_id(tenant_id, str(billing_period)),
            tenant_id=tenant_id,
            user_id=user_id,
        ),
        initial_data={"tenant_id": tenant_id, "billing_period": billing_period},
    )
