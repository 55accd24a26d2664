"""The service provisioning saga: validate → allocate → configure → activate → notify."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.operations._adapters import (
    OutboxNotifier,
    RecordingNetworkProvisioner,
)
from dotmac_shared.business_logic.operations._ports import NetworkProvisioner, Notifier
from dotmac_shared.business_logic.operations._service_steps import (
    EligibilityCheck,
    ServiceProvisioningSteps,
)

# The policies' own modules, not the package: policies/commissions.py imports this package's
# models, so this module may be imported while the policies package is still initializing.
from dotmac_shared.business_logic.policies import PlanEligibilityEngine, PolicyContext
from dotmac_shared.business_logic.sagas import (
    NOTHING_TO_UNDO,
    RetryPolicy,
    SagaDefinition,
    SagaStep,
    StepContext,
    StepKind,
)

__all__ = ["ServiceProvisioningSaga", "check_plan_eligibility"]


@functools.cache
def _eligibility_engine() -> PlanEligibilityEngine:
    return PlanEligibilityEngine()  # loads and compiles the shipped policies once


def check_plan_eligibility(
    plan_type: str, customer_data: Mapping[str, Any], tenant_id: str, user_id: str | None
) -> Mapping[str, Any]:
    """The default eligibility check of the saga: the shipped plan-eligibility policies."""
    context = PolicyContext(tenant_id=tenant_id, user_id=user_id, operation="service_provisioning")
    return _eligibility_engine().check_plan_eligibility(
        plan_type=plan_type, customer_data=customer_data, context=context
    )


class ServiceProvisioningSaga:
    """Builds the ``service_provisioning`` saga definition.

    The request (``initial_data``) names ``customer_id``, ``service_type`` (internet,
    hosting, voip, security), ``plan`` (basic, standard, premium, enterprise) and
    ``billing_period`` or ``billing_cycle`` (monthly, quarterly, annual); plan-side
    eligibility fields (``contract_term_months``, ``support_tier``) may come with it. The
    result of ``activate_service`` holds the new ``service_id``.
    """

    name: ClassVar[str] = "service_provisioning"

    @classmethod
    def create_definition(
        cls,
        *,
        provisioner: NetworkProvisioner | None = None,
        notifier: Notifier | None = None,
        eligibility: EligibilityCheck | None = None,
        step_timeout: float | None = 30.0,
        saga_timeout: float | None = 300.0,
    ) -> SagaDefinition:
        """Return the definition; the collaborators default to the shipped adapters."""
        network = provisioner or RecordingNetworkProvisioner()
        outbox = notifier or OutboxNotifier()
        check = eligibility or check_plan_eligibility

        def steps(ctx: StepContext) -> ServiceProvisioningSteps:
            return ServiceProvisioningSteps(ctx.session_factory, network, outbox, check)

        def tenant(ctx: StepContext) -> str:
            if not ctx.context.tenant_id:
                raise InvalidInputError(
                    "a service saga needs SagaContext.tenant_id", field="tenant_id"
                )
            return ctx.context.tenant_id

        async def validate(ctx: StepContext) -> dict[str, Any]:
            return await steps(ctx).validate_request(tenant(ctx), ctx.context.user_id, ctx.data)

        async def allocate(ctx: StepContext) -> dict[str, Any]:
            request = ctx.step_results["validate_request"]
            return await steps(ctx).allocate_resources(ctx.saga_id, tenant(ctx), request)

        async def release(ctx: StepContext) -> None:
            await steps(ctx).release_resources(ctx.saga_id)

        async def configure(ctx: StepContext) -> dict[str, Any]:
            request = ctx.step_results["validate_request"]
            address = ctx.step_results["allocate_resources"]["ip_address"]
            return await steps(ctx).configure_service(ctx.saga_id, tenant(ctx), request, address)

        async def deconfigure(ctx: StepContext) -> None:
            await steps(ctx).deconfigure_service(ctx.saga_id)

        async def activate(ctx: StepContext) -> dict[str, Any]:
            customer_id = ctx.step_results["validate_request"]["customer_id"]
            return await steps(ctx).activate_service(ctx.saga_id, tenant(ctx), customer_id)

        async def deactivate(ctx: StepContext) -> None:
            # Remove the billing account only if this saga created it (a crash before the
            # step finished leaves no result: keep the account, it may be another's).
            created = bool(ctx.result and ctx.result.get("billing_account_created"))
            await steps(ctx).deactivate_service(ctx.saga_id, remove_billing_account=created)

        async def notify(ctx: StepContext) -> dict[str, Any]:
            customer_id = ctx.step_results["validate_request"]["customer_id"]
            return await steps(ctx).notify_customer(ctx.saga_id, tenant(ctx), customer_id)

        database_retry = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=1.0)
        return SagaDefinition(
            name=cls.name,
            steps=[
                SagaStep(
                    name="validate_request",
                    execute=validate,
                    compensate=NOTHING_TO_UNDO,  # a check: it changes nothing
                    timeout=step_timeout,
                ),
                SagaStep(
                    name="allocate_resources",
                    execute=allocate,
                    compensate=release,
                    timeout=step_timeout,
                ),
                SagaStep(
                    name="configure_service",
                    execute=configure,
                    compensate=deconfigure,
                    timeout=step_timeout,
                    retry=database_retry,
                ),
                SagaStep(
                    name="activate_service",
                    execute=activate,
                    compensate=deactivate,  # undoes a partly done activation that failed
                    timeout=step_timeout,
                    retry=database_retry,
                    # The go/no-go: once the service is active, the saga only goes forward.
                    kind=StepKind.PIVOT,
                ),
                SagaStep(
                    name="notify_customer",
                    execute=notify,
                    timeout=step_timeout,
                    retry=database_retry,
                    kind=StepKind.RETRIABLE,
                ),
            ],
            timeout=saga_timeout,
        )
