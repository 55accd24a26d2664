"""``/v1/sagas``: list, show (with history), cancel and repair a tenant's sagas.

Listing pages with filters and a cursor; the repair actions live under
``/v1/sagas/{id}/actions/...`` and need the admin role.

Each repair action takes a JSON body with the ``reason`` (required); the operator recorded in
the saga's history is the authenticated principal. An action that does not apply to the saga
as it is answers 409 (``saga_repair_refused``) and changes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from dotmac_shared.business_logic.http._auth import Principal
from dotmac_shared.business_logic.http._saga_results import (
    SagaDetail,
    SagaEventView,
    SagaOutcome,
    SagaSummary,
    detail_view,
    event_view,
    outcome_view,
    summary_view,
)
from dotmac_shared.business_logic.http._state import PROBLEM_RESPONSES, Admin, Caller, Services
from dotmac_shared.business_logic.sagas import SagaStatus

__all__ = ["MarkCompensatedRequest", "RepairRequest", "ResolveRequest", "SagaPage", "router"]

router = APIRouter(prefix="/v1/sagas", tags=["sagas"], responses=PROBLEM_RESPONSES)

StatusFilter = Annotated[SagaStatus | None, Query(description="Only sagas in this status.")]


class SagaPage(BaseModel):
    """One page of sagas, newest first (the response model of ``SagaCoordinator.page_sagas``)."""

    items: list[SagaSummary]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


@router.get("", response_model=SagaPage, summary="List sagas")
async def list_sagas(
    caller: Caller,
    services: Services,
    name: Annotated[str | None, Query(description="Only sagas of this type.")] = None,
    status: StatusFilter = None,
    created_after: Annotated[
        dt.datetime | None, Query(description="Only sagas created at or after this time.")
    ] = None,
    created_before: Annotated[
        dt.datetime | None, Query(description="Only sagas created before this time.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="From a previous page's next_cursor.")] = None,
) -> SagaPage:
    """The caller's tenant's sagas, newest first, a page at a time (keyset paging)."""
    page = await services.coordinator.page_sagas(
        tenant_id=caller.tenant_id,
        saga_name=name,
        status=status,
        created_after=created_after,
        created_before=created_before,
        limit=limit,
        cursor=cursor,
    )
    return SagaPage(items=[summary_view(item) for item in page.items], next_cursor=page.next_cursor)


@router.get("/{saga_id}", response_model=SagaDetail, summary="Show a saga")
async def get_saga(saga_id: str, caller: Caller, services: Services) -> SagaDetail:
    """A saga's record: every step with its attempts, error and duration."""
    return detail_view(await services.coordinator.get_saga(saga_id, tenant_id=caller.tenant_id))


@router.post("/{saga_id}/cancel", response_model=SagaOutcome, summary="Cancel a saga (admin)")
async def cancel_saga(saga_id: str, caller: Admin, services: Services) -> SagaOutcome:
    """Stop a running saga and compensate what it did; a finished saga is returned as is."""
    return outcome_view(await services.coordinator.cancel_saga(saga_id, tenant_id=caller.tenant_id))


class RepairRequest(BaseModel):
    """Why an operator acts (recorded in the saga's history with who)."""

    reason: str = Field(min_length=1, max_length=2000, description="Why (required).")


class CancelRequest(BaseModel):
    """Why an operator cancels (optional; recorded in the saga's history)."""

    reason: str | None = Field(None, max_length=2000)


class MarkCompensatedRequest(RepairRequest):
    """The stuck step a person undid by hand, and why."""

    step: str = Field(min_length=1, max_length=255, description="The stuck step.")


class ResolveRequest(RepairRequest):
    """A person finished the exhausted step outside: its result, and why."""

    output: dict[str, Any] | None = Field(
        None, description="The step's result (what later steps see)."
    )


def _operator(caller: Principal) -> str:
    """Who acts, as recorded in the history: the authenticated principal."""
    return caller.user_id or f"tenant:{caller.tenant_id}"


@router.get("/{saga_id}/history", response_model=list[SagaEventView], summary="A saga's history")
async def saga_history(
    saga_id: str,
    caller: Caller,
    services: Services,
    after: Annotated[
        int | None, Query(description="The sequence of the last entry already seen.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[SagaEventView]:
    """A page of the saga's history, oldest first."""
    events = await services.coordinator.saga_history(
        saga_id, tenant_id=caller.tenant_id, after=after, limit=limit
    )
    return [event_view(event) for event in events]


@router.post(
    "/{saga_id}/actions/cancel", response_model=SagaDetail, summary="Cancel a saga (admin)"
)
async def cancel_action(
    saga_id: str, body: CancelRequest, caller: Admin, services: Services
) -> SagaDetail:
    """Stop a running saga and compensate it, recording who and why; 409 past its pivot."""
    coordinator = services.coordinator
    await coordinator.cancel_saga(
        saga_id, tenant_id=caller.tenant_id, operator=_operator(caller), reason=body.reason
    )
    return detail_view(await coordinator.get_saga(saga_id, tenant_id=caller.tenant_id))


@router.post(
    "/{saga_id}/actions/retry-compensation",
    response_model=SagaDetail,
    summary="Retry a failed compensation (admin)",
)
async def retry_compensation(
    saga_id: str, body: RepairRequest, caller: Admin, services: Services
) -> SagaDetail:
    """Run the failed compensation of a compensation_failed saga again; 409 otherwise."""
    return detail_view(
        await services.coordinator.retry_compensation(
            saga_id, tenant_id=caller.tenant_id, operator=_operator(caller), reason=body.reason
        )
    )


@router.post(
    "/{saga_id}/actions/mark-compensated",
    response_model=SagaDetail,
    summary="Mark a stuck step compensated by hand (admin)",
)
async def mark_compensated(
    saga_id: str, body: MarkCompensatedRequest, caller: Admin, services: Services
) -> SagaDetail:
    """A person undid the stuck step outside: mark it compensated and go on; 409 otherwise."""
    return detail_view(
        await services.coordinator.mark_step_compensated(
            saga_id,
            body.step,
            tenant_id=caller.tenant_id,
            operator=_operator(caller),
            reason=body.reason,
        )
    )


@router.post(
    "/{saga_id}/actions/retry-step",
    response_model=SagaDetail,
    summary="Retry an exhausted step forward (admin)",
)
async def retry_step(
    saga_id: str, body: RepairRequest, caller: Admin, services: Services
) -> SagaDetail:
    """Run the exhausted step of a saga in incident again and go forward; 409 otherwise."""
    return detail_view(
        await services.coordinator.retry_step(
            saga_id, tenant_id=caller.tenant_id, operator=_operator(caller), reason=body.reason
        )
    )


@router.post(
    "/{saga_id}/actions/resolve",
    response_model=SagaDetail,
    summary="Resolve an incident by hand (admin)",
)
async def resolve_incident(
    saga_id: str, body: ResolveRequest, caller: Admin, services: Services
) -> SagaDetail:
    """A person finished the exhausted step: record its output and go forward; 409 otherwise."""
    return detail_view(
        await services.coordinator.resolve_incident(
            saga_id,
            tenant_id=caller.tenant_id,
            operator=_operator(caller),
            reason=body.reason,
            output=body.output,
        )
    )
