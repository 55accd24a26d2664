"""Customers and tenants: plan eligibility, service provisioning, tenant provisioning.

Both provisioning routes require an ``Idempotency-Key``: the middleware runs a key's request
once and replays its response; the saga id is derived from the tenant and the key, so a
retry after a crash resumes the same saga instead of starting another.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from dotmac_shared.business_logic.exceptions import (
    InvalidInputError,
    ProvisioningError,
    ResourceNotFoundError,
    SagaCompensatedError,
)
from dotmac_shared.business_logic.http._dependencies import require_idempotency_key
from dotmac_shared.business_logic.http._saga_results import SagaOutcome, outcome_view
from dotmac_shared.business_logic.http._state import PROBLEM_RESPONSES, Admin, Caller, Services
from dotmac_shared.business_logic.observability._context import get_correlation_id
from dotmac_shared.business_logic.operations import customer_record
from dotmac_shared.business_logic.operations._tenant_provisioning import (
    TenantProvisioningOperation,
)
from dotmac_shared.business_logic.policies import PolicyContext
from dotmac_shared.business_logic.sagas import SagaContext, SagaResult, SagaStatus

__all__ = [
    "EligibilityAnswer",
    "TenantProvisioned",
    "compensated_saga_error",
    "router",
    "saga_id_for_key",
]

router = APIRouter(prefix="/v1", tags=["provisioning"], responses=PROBLEM_RESPONSES)

IdempotencyKey = Annotated[str, Depends(require_idempotency_key)]


def saga_id_for_key(kind: str, tenant_id: str, key: str) -> str:
    """The saga id of a provisioning request: one per tenant, operation and client key."""
    return f"{kind}-" + hashlib.sha256(f"{tenant_id}\x00{key}".encode()).hexdigest()[:32]


def _not_found(exc: InvalidInputError, customer_id: str, tenant_id: str) -> ResourceNotFoundError:
    return ResourceNotFoundError(
        exc.message, resource_type="customer", resource_id=customer_id, tenant_id=tenant_id
    )


def compensated_saga_error(saga: SagaResult, message: str, **context: Any) -> SagaCompensatedError:
    """The error of a provisioning saga that ended compensated: its structured failure.

    Its HTTP status is the failure's (``compensated_saga_status``): 422 for a request the
    saga refused (invalid input, a policy violation), 502/504 for a system that failed.
    """
    return SagaCompensatedError(
        message,
        saga_id=saga.saga_id,
        saga_name=saga.saga_name,
        failed_step=saga.failed_step,
        compensated_steps=saga.compensated_steps,
        failure=saga.error.to_dict() if saga.error is not None else None,
        **context,
    )


class EligibilityAnswer(BaseModel):
    """Whether a customer may have a plan, and why (not)."""

    customer_id: str
    plan_type: str
    eligible: bool = Field(description="Every rule of the plan's policy passed.")
    decision: str = Field(description="ALLOW, DENY or REQUIRE_APPROVAL.")
    requires_approval: bool
    policy_name: str
    policy_version: str
    reasons: list[str]
    failed_rules: list[str]
    policy_result: dict[str, Any] = Field(description="The full explained PolicyResult.")


@router.post(
    "/customers/{customer_id}/eligibility",
    response_model=EligibilityAnswer,
    tags=["customers"],
    summary="Check a customer's eligibility for a plan",
)
async def check_eligibility(
    customer_id: str,
    plan: Annotated[str, Query(description="residential_basic, business_pro or enterprise.")],
    caller: Caller,
    services: Services,
) -> EligibilityAnswer:
    """Evaluate the plan's eligibility policy against the customer's stored profile."""
    try:
        record = await customer_record(services.session_factory, caller.tenant_id, customer_id)
    except InvalidInputError as exc:
        raise _not_found(exc, customer_id, caller.tenant_id) from exc
    answer = services.eligibility.check_plan_eligibility(
        plan_type=plan,
        customer_data=record.profile,
        context=PolicyContext(
            tenant_id=caller.tenant_id,
            user_id=caller.user_id,
            operation="api.eligibility",
            correlation_id=get_correlation_id(),
        ),
    )
    return EligibilityAnswer(
        customer_id=customer_id,
        plan_type=plan,
        eligible=bool(answer["eligible"]),
        decision=str(answer["decision"]),
        requires_approval=bool(answer["requires_approval"]),
        policy_name=str(answer["policy_name"]),
        policy_version=str(answer["policy_version"]),
        reasons=[str(reason) for reason in answer["reasons"]],
        failed_rules=[str(rule) for rule in answer["failed_rules"]],
        policy_result=dict(answer["policy_result"]),
    )


class ServiceRequest(BaseModel):
    """The service to provision for a customer."""

    service_type: Literal["internet", "hosting", "voip", "security"]
    plan: Literal["basic", "standard", "premium", "enterprise"]
    billing_cycle: Literal["monthly", "quarterly", "annual"] = "monthly"
    contract_term_months: int | None = Field(None, ge=0, le=120)
    support_tier: Literal["standard", "premium", "enterprise"] | None = None


@router.post(
    "/customers/{customer_id}/services",
    response_model=SagaOutcome,
    status_code=201,
    tags=["customers"],
    summary="Provision a service for a customer (requires Idempotency-Key)",
)
async def provision_service(
    customer_id: str,
    request: ServiceRequest,
    caller: Caller,
    services: Services,
    idempotency_key: IdempotencyKey,
) -> SagaOutcome:
    """Run the service provisioning saga: validate, allocate, configure, activate, notify."""
    try:
        await customer_record(services.session_factory, caller.tenant_id, customer_id)
    except InvalidInputError as exc:
        raise _not_found(exc, customer_id, caller.tenant_id) from exc
    data: dict[str, Any] = {"customer_id": customer_id, **request.model_dump(exclude_none=True)}
    outcome = await services.coordinator.execute_saga(
        saga_name="service_provisioning",
        context=SagaContext(
            saga_id=saga_id_for_key("svc", caller.tenant_id, idempotency_key),
            tenant_id=caller.tenant_id,
            user_id=caller.user_id,
        ),
        initial_data=data,
    )
    view = outcome_view(outcome)
    if view.status == SagaStatus.COMPLETED:
        return view
    if outcome.status is SagaStatus.COMPENSATED:
        # Nothing of the service is left; the failure says whose fault it was.
        raise compensated_saga_error(
            outcome,
            f"service for customer {customer_id} was not provisioned",
            operation="service_provisioning",
            resource_type="customer",
            resource_id=customer_id,
            tenant_id=caller.tenant_id,
        )
    # Compensation failed (or another worker drives the saga): not the client's fault.
    raise ProvisioningError(
        f"service for customer {customer_id} was not provisioned: "
        + (outcome.error.message if outcome.error is not None else str(outcome.status)),
        operation="service_provisioning",
        resource_type="customer",
        resource_id=customer_id,
        tenant_id=caller.tenant_id,
        metadata={"saga_id": view.saga_id, "failed_step": view.failed_step},
    )


class TenantRequest(BaseModel):
    """The tenant to provision."""

    name: str = Field(min_length=1, max_length=255)
    domain: str = Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
    plan: str = Field(description="The tenant's licence tier, e.g. basic.")
    admin_email: str = Field(max_length=320)


class TenantProvisioned(BaseModel):
    """A provisioned tenant."""

    tenant_id: str
    saga_id: str
    status: str
    domain: str
    plan: str
    settings: dict[str, Any]
    schema_name: str | None = Field(None, alias="schema")

    model_config = {"populate_by_name": True}


@router.post(
    "/tenants",
    response_model=TenantProvisioned,
    response_model_by_alias=True,
    status_code=201,
    tags=["tenants"],
    summary="Provision a tenant (admin; requires Idempotency-Key)",
)
async def provision_tenant(
    request: TenantRequest,
    caller: Admin,
    services: Services,
    idempotency_key: IdempotencyKey,
) -> TenantProvisioned:
    """Run the tenant provisioning saga: create, configure, defaults, activate."""
    try:
        result = await TenantProvisioningOperation().execute(
            request.model_dump(),
            {
                "session_factory": services.session_factory,
                "tenant_id": caller.tenant_id,
                "user_id": caller.user_id,
                "idempotency_key": idempotency_key,
            },
        )
    except ProvisioningError as exc:
        saga_id = exc.metadata.get("saga_id")
        if exc.metadata.get("saga_status") != SagaStatus.COMPENSATED or saga_id is None:
            raise
        # Compensated: nothing of the tenant is left; its failure says whose fault it was.
        saga = await services.coordinator.get_saga(str(saga_id), tenant_id=caller.tenant_id)
        raise compensated_saga_error(
            saga,
            exc.message,
            operation="tenant_provisioning",
            resource_type="tenant",
            resource_id=exc.resource_id,
            tenant_id=caller.tenant_id,
        ) from exc
    return TenantProvisioned.model_validate(dict(result))
