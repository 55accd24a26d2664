"""``/v1/sagas``: list a tenant's sagas (filters, cursor paging), show one, cancel one."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from dotmac_shared.business_logic.http._saga_results import (
    SagaDetail,
    SagaOutcome,
    SagaSummary,
    detail_view,
    outcome_view,
    summary_view,
)
from dotmac_shared.business_logic.http._state import PROBLEM_RESPONSES, Admin, Caller, Services
from dotmac_shared.business_logic.sagas import SagaStatus

__all__ = ["SagaPage", "router"]

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
