"""Billing runs: the list, starting one, a run's live progress and its report.

A run's page polls ``/billing/{id}/progress`` (a fragment of HTML) every second with the
console's small script until the run has finished; without JavaScript, reloading the page
shows the same.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dotmac_shared.business_logic.console._forms import SagaFilters
from dotmac_shared.business_logic.exceptions import (
    BillingRunError,
    BusinessLogicError,
    InvalidInputError,
    ResourceNotFoundError,
)
from dotmac_shared.business_logic.http._problems import problem_status
from dotmac_shared.business_logic.operations import (
    BillingRunProgress,
    BillingRunSaga,
    billing_run_progress,
    start_billing_run,
)

if TYPE_CHECKING:
    from dotmac_shared.business_logic.console._app import Console, Visit

__all__ = ["routes"]


async def _runs(console: Console, visit: Visit) -> dict[str, Any]:
    """The list's context: the runs the user reaches, newest first, a page at a time."""
    user = visit.signed_in_user
    filters = SagaFilters.parse(visit.request.query_params)
    page = await console.services.coordinator.page_sagas(
        tenant_id=user.scope(filters.tenant),
        saga_name=BillingRunSaga.name,
        status=filters.status,
        limit=filters.limit,
        cursor=filters.cursor,
    )
    return {
        "items": page.items,
        "next_query": filters.query(cursor=page.next_cursor) if page.next_cursor else None,
        "first_query": filters.query() if filters.cursor else None,
    }


async def run_list(console: Console, visit: Visit) -> Response:
    """The billing runs, and the form that starts one."""
    context = await _runs(console, visit)
    return console.render(
        visit, "billing.html", title="Billing runs", error=None, values={}, **context
    )


async def start_run(console: Console, visit: Visit) -> Response:
    """Start a run for a period (a platform operator names the tenant), then show it."""
    user = visit.signed_in_user
    form = visit.form
    tenant = form.get("tenant", "").strip() if user.is_platform else user.principal.tenant_id
    try:
        if not tenant:
            raise InvalidInputError("name the tenant to bill", field="tenant")
        started = await start_billing_run(
            console.services.session_factory,
            tenant,
            form.get("billing_period", "").strip(),
            retry=form.get("retry") == "on",
            user_id=user.principal.user_id,
            lease_seconds=console.services.lease_seconds,
            clock=console.services.clock,
        )
    except BusinessLogicError as exc:
        context = await _runs(console, visit)
        return console.render(
            visit,
            "billing.html",
            status=problem_status(exc),
            title="Billing runs",
            error=exc,
            values=form,
            **context,
        )
    console.services.keep(started.task)
    return console.redirect(visit, f"/billing/{urllib.parse.quote(started.billing_run_id)}")


async def _progress(console: Console, visit: Visit) -> BillingRunProgress:
    """The run's progress, if the user reaches its tenant; else "not found"."""
    user = visit.signed_in_user
    run_id = visit.request.path_params["run_id"]
    tenant = user.principal.tenant_id
    if user.is_platform:
        saga = await console.services.coordinator.get_saga(run_id, tenant_id=user.scope())
        tenant = saga["tenant_id"] or ""
    try:
        return await billing_run_progress(console.services.session_factory, tenant, run_id)
    except BillingRunError as exc:
        if exc.metadata.get("reason") == "not_found":
            raise ResourceNotFoundError(
                exc.message, resource_type="billing_run", resource_id=run_id, tenant_id=tenant
            ) from exc
        raise


async def run_page(console: Console, visit: Visit) -> Response:
    """A run: its progress (live while it runs) and, once finalized, its report."""
    progress = await _progress(console, visit)
    return console.render(
        visit, "billing_run.html", title=f"Billing run {progress.billing_run_id}", run=progress
    )


async def run_progress(console: Console, visit: Visit) -> Response:
    """The progress fragment the run's page polls."""
    progress = await _progress(console, visit)
    return console.render(visit, "billing_progress.html", run=progress)


def routes(console: Console) -> list[BaseRoute]:
    """The billing routes."""
    return [
        Route("/billing", console.view(run_list), methods=["GET"]),
        Route("/billing", console.view(start_run), methods=["POST"]),
        Route("/billing/{run_id}", console.view(run_page), methods=["GET"]),
        Route("/billing/{run_id}/progress", console.view(run_progress), methods=["GET"]),
    ]
