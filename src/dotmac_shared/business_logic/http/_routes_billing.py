"""``/v1/billing-runs``: start a run (202, it goes on in the background), read its progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from dotmac_shared.business_logic.exceptions import BillingRunError, ResourceNotFoundError
from dotmac_shared.business_logic.http._state import PROBLEM_RESPONSES, Caller, Services
from dotmac_shared.business_logic.operations import billing_run_progress, start_billing_run

__all__ = ["BillingRunAccepted", "BillingRunRequest", "BillingRunStatus", "router"]

router = APIRouter(prefix="/v1/billing-runs", tags=["billing"], responses=PROBLEM_RESPONSES)


class BillingRunRequest(BaseModel):
    """The period to bill for the caller's tenant."""

    billing_period: str = Field(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM, not future.")
    retry: bool = Field(False, description="Start a new attempt after a compensated one.")


class BillingRunAccepted(BaseModel):
    """A run that was started (or found started): poll its Location."""

    billing_run_id: str
    tenant_id: str
    billing_period: str
    attempt: int


class BillingRunStatus(BaseModel):
    """A run's progress, and its report once finalized."""

    billing_run_id: str
    tenant_id: str
    billing_period: str | None
    attempt: int
    status: str = Field(description="The saga's status: running, completed, compensated, ...")
    run_status: str | None = Field(description="open, finalized, cancelled, ...")
    finished: bool
    steps_total: int
    steps_completed: int
    current_step: str | None
    error: str | None
    failed_step: str | None
    report: dict[str, Any] | None
    partitions: dict[str, int] = Field(
        default_factory=dict,
        description="How many of the run's customer partitions are in each state.",
    )


@router.post(
    "",
    response_model=BillingRunAccepted,
    status_code=202,
    summary="Start a billing run",
    responses={
        202: {
            "headers": {
                "Location": {
                    "description": "Where to read its progress.",
                    "schema": {"type": "string"},
                }
            }
        },
    },
)
async def start_run(
    request: BillingRunRequest, response: Response, caller: Caller, services: Services
) -> BillingRunAccepted:
    """Start the caller's tenant's billing for a period; returns once the run is durable."""
    # A retry refused by the period's state (completed, running, never run) is a
    # BillingRunError: 409, with the reason in its context.
    started = await start_billing_run(
        services.session_factory,
        caller.tenant_id,
        request.billing_period,
        retry=request.retry,
        user_id=caller.user_id,
        lease_seconds=services.lease_seconds,
        clock=services.clock,
    )
    services.keep(started.task)
    response.headers["Location"] = f"/v1/billing-runs/{started.billing_run_id}"
    return BillingRunAccepted(**started.to_dict())


@router.get("/{billing_run_id}", response_model=BillingRunStatus, summary="Read a billing run")
async def read_run(billing_run_id: str, caller: Caller, services: Services) -> BillingRunStatus:
    """Where the run is, and its report once finalized."""
    try:
        progress = await billing_run_progress(
            services.session_factory, caller.tenant_id, billing_run_id
        )
    except BillingRunError as exc:
        if exc.metadata.get("reason") == "not_found":
            raise ResourceNotFoundError(
                exc.message,
                resource_type="billing_run",
                resource_id=billing_run_id,
                tenant_id=caller.tenant_id,
            ) from exc
        raise
    return BillingRunStatus(**progress.to_dict())
