"""Tenant provisioning: an idempotent operation that runs the tenant saga.

Saga steps: create tenant → configure database → set up defaults (limits from the
licensing policy) → activate. Each has a compensation, so a failure at any step leaves no
tenant, schema or settings behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import async_sessionmaker

from dotmac_shared.business_logic.exceptions import (
    InvalidInputError,
    ProvisioningError,
    SagaNotFoundError,
)
from dotmac_shared.business_logic.idempotency import IdempotentOperation
from dotmac_shared.business_logic.operations._tenant_steps import (
    TenantProvisioningSteps,
    licensing,
    tenant_id_for,
    validate_tenant_request,
)
from dotmac_shared.business_logic.sagas import (
    RetryPolicy,
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStatus,
    SagaStep,
    StepContext,
    StepKind,
)

__all__ = ["TenantProvisioningOperation", "TenantProvisioningSaga"]

#: A business failure (compensated saga) may be retried with a fresh saga this many times.
_MAX_FRESH_SAGAS = 100


class TenantProvisioningSaga:
    """Builds the ``tenant_provisioning`` saga definition (``initial_data`` = the request)."""

    name: ClassVar[str] = "tenant_provisioning"

    @classmethod
    def create_definition(cls, *, step_timeout: float | None = 60.0) -> SagaDefinition:
        """Return the definition of the four-step tenant saga."""

        def steps(ctx: StepContext) -> TenantProvisioningSteps:
            return TenantProvisioningSteps(ctx.session_factory)

        def tenant(ctx: StepContext) -> str:
            return tenant_id_for(ctx.saga_id)

        async def create(ctx: StepContext) -> dict[str, Any]:
            return await steps(ctx).create_tenant(tenant(ctx), validate_tenant_request(ctx.data))

        async def delete(ctx: StepContext) -> None:
            await steps(ctx).delete_tenant(tenant(ctx))

        async def configure(ctx: StepContext) -> dict[str, Any]:
            request = validate_tenant_request(ctx.data)
            return await steps(ctx).configure_database(tenant(ctx), request.admin_email)

        async def drop(ctx: StepContext) -> None:
            await steps(ctx).drop_database(tenant(ctx))

        async def defaults(ctx: StepContext) -> dict[str, Any]:
            plan = validate_tenant_request(ctx.data).plan
            limits = licensing().plan_defaults(plan)
            return await steps(ctx).setup_defaults(tenant(ctx), plan, limits)

        async def remove_defaults(ctx: StepContext) -> None:
            await steps(ctx).remove_defaults(tenant(ctx))

        async def activate(ctx: StepContext) -> dict[str, Any]:
            return await steps(ctx).activate_tenant(tenant(ctx))

        async def deactivate(ctx: StepContext) -> None:
            await steps(ctx).deactivate_tenant(tenant(ctx))

        retry = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=1.0, retry_on=(OSError,))
        return SagaDefinition(
            name=cls.name,
            steps=[
                SagaStep(
                    name="create_tenant", execute=create, compensate=delete, timeout=step_timeout
                ),
                SagaStep(
                    name="configure_database",
                    execute=configure,
                    compensate=drop,
                    timeout=step_timeout,
                    retry=retry,
                ),
                SagaStep(
                    name="setup_defaults",
                    execute=defaults,
                    compensate=remove_defaults,
                    timeout=step_timeout,
                    retry=retry,
                ),
                SagaStep(
                    name="activate_tenant",
                    execute=activate,
                    compensate=deactivate,
                    timeout=step_timeout,
                    retry=retry,
                    kind=StepKind.PIVOT,  # the go/no-go (the last step: nothing follows it)
                ),
            ],
        )


class TenantProvisioningOperation(IdempotentOperation):
    """Provision a tenant once per payload: ``{"name", "domain", "plan", "admin_email"}``.

    Run it through :class:`~dotmac_shared.business_logic.IdempotencyManager`; the result is
    ``{"tenant_id", "saga_id", "status", "domain", "plan", "settings", "schema"}``. A
    taken domain or invalid input is a failure (``success=False``) that leaves nothing
    behind; the key is freed, so a corrected retry of the same payload may run again.
    """

    operation_type = "tenant_provisioning"
    lease_seconds = 60.0  # longer than the saga's lease: a dead holder's saga is resumable

    async def execute(
        self, operation_data: Mapping[str, Any], context: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """Validate, then run (or resume) the tenant saga of this idempotency key."""
        request = validate_tenant_request(operation_data)
        factory = context.get("session_factory")
        if not isinstance(factory, async_sessionmaker):
            raise InvalidInputError(
                "tenant provisioning needs an IdempotencyManager built with a session_factory",
                field="session_factory",
            )
        coordinator = SagaCoordinator(factory)
        coordinator.register_saga(TenantProvisioningSaga.create_definition())
        base = (
            "tenant-"
            + hashlib.sha256(
                f"{context['tenant_id']}:{context['idempotency_key']}".encode()
            ).hexdigest()[:24]
        )
        saga_id = await _fresh_or_unfinished(coordinator, base, context.get("tenant_id"))
        outcome = await coordinator.execute_saga(
            saga_name=TenantProvisioningSaga.name,
            context=SagaContext(
                saga_id=saga_id,
                tenant_id=context.get("tenant_id"),
                user_id=context.get("user_id"),
                metadata={"domain": request.domain},
            ),
            initial_data=dict(operation_data),
        )
        if outcome["status"] != SagaStatus.COMPLETED:
            raise ProvisioningError(
                f"tenant {request.domain!r} was not provisioned: "
                f"{outcome['error']['message'] if outcome['error'] else outcome['status']}",
                operation="tenant_provisioning",
                resource_type="tenant",
                resource_id=tenant_id_for(saga_id),
                tenant_id=context.get("tenant_id"),
                user_id=context.get("user_id"),
                metadata={
                    "saga_id": saga_id,
                    "saga_status": str(outcome["status"]),
                    "failed_step": outcome["failed_step"],
                    "compensated_steps": list(outcome["compensated_steps"]),
                },
            )
        results = outcome["step_results"]
        return {
            "tenant_id": results["activate_tenant"]["tenant_id"],
            "saga_id": saga_id,
            "status": results["activate_tenant"]["status"],
            "domain": request.domain,
            "plan": request.plan,
            "settings": results["setup_defaults"]["settings"],
            "schema": results["configure_database"]["schema"],
        }


async def _fresh_or_unfinished(
    coordinator: SagaCoordinator, base: str, tenant_id: str | None
) -> str:
    """The saga id for this key: resume an unfinished saga, never re-run a compensated one."""
    for n in range(_MAX_FRESH_SAGAS):
        saga_id = base if n == 0 else f"{base}-{n}"
        try:
            saga = await coordinator.get_saga(saga_id, tenant_id=tenant_id)
        except SagaNotFoundError:
            return saga_id
        if saga["status"] != SagaStatus.COMPENSATED:
            return saga_id
    raise ProvisioningError(f"tenant provisioning {base} failed {_MAX_FRESH_SAGAS} times")
