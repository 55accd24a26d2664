"""The saga list (filters, keyset paging), a saga's page, and its repair actions."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dotmac_shared.business_logic.console._actions import (
    ACTIONS,
    ActionRequest,
    RepairAction,
    actions_for,
    require_reason,
)
from dotmac_shared.business_logic.console._forms import SagaFilters, parse_json_object
from dotmac_shared.business_logic.exceptions import (
    BusinessLogicError,
    InvalidInputError,
    ResourceNotFoundError,
)
from dotmac_shared.business_logic.http._problems import problem_status
from dotmac_shared.business_logic.http._routes_policies import require_finite
from dotmac_shared.business_logic.sagas import SagaStatus

if TYPE_CHECKING:
    from dotmac_shared.business_logic.console._app import Console, Visit

__all__ = ["routes"]

#: What the saga page says after an action (keyed by the action's slug; never free text).
DONE: Final = {slug: f"{action.label}: done." for slug, action in ACTIONS.items()}


def _duration(start: Any, end: Any) -> str:
    if start is None or end is None:
        return ""
    seconds = max(0.0, (end - start).total_seconds())
    return f"{seconds:.3f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


async def saga_list(console: Console, visit: Visit) -> Response:
    """The sagas the user reaches, newest first, filtered, a page at a time."""
    user = visit.signed_in_user
    query = visit.request.query_params
    names = sorted(console.services.coordinator.definitions)
    context: dict[str, Any] = {
        "title": "Sagas",
        "statuses": [status.value for status in SagaStatus],
        "names": names,
        "items": [],
        "next_query": None,
        "first_query": None,
        "error": None,
    }
    try:
        filters = SagaFilters.parse(query)
        context["values"] = filters.form_values()
        page = await console.services.coordinator.page_sagas(
            tenant_id=user.scope(filters.tenant),
            saga_name=filters.name,
            status=filters.status,
            created_after=filters.created_from,
            created_before=filters.created_to,
            limit=filters.limit,
            cursor=filters.cursor,
        )
    except InvalidInputError as exc:
        context.setdefault(
            "values", {key: query.get(key, "") for key in SagaFilters().form_values()}
        )
        context["error"] = exc
        return console.render(visit, "sagas.html", status=400, **context)
    context["items"] = page.items
    if page.next_cursor is not None:
        context["next_query"] = filters.query(cursor=page.next_cursor)
    if filters.cursor is not None:
        context["first_query"] = filters.query()
    return console.render(visit, "sagas.html", **context)


def _history(saga: Mapping[str, Any]) -> list[Any]:
    """The saga's event history, oldest first (empty if none is recorded)."""
    return list(getattr(saga, "history", None) or ())


async def _load(console: Console, visit: Visit, saga_id: str) -> Any:
    return await console.services.coordinator.get_saga(
        saga_id, tenant_id=visit.signed_in_user.scope()
    )


async def saga_page(console: Console, visit: Visit) -> Response:
    """A saga: its steps, failure, event history and the actions that apply."""
    saga_id = visit.request.path_params["saga_id"]
    saga = await _load(console, visit, saga_id)
    done = visit.request.query_params.get("done")
    definition = console.services.coordinator.definitions.get(saga["saga_name"])
    kinds = {step.name: str(step.kind) for step in definition.steps} if definition else {}
    steps = [
        {
            **dict(step),
            "kind": kinds.get(step["name"], ""),
            "status": str(step["status"]),
            "duration": _duration(
                step["started_at"], step["compensated_at"] or step["completed_at"]
            ),
        }
        for step in saga["steps"]
    ]
    return console.render(
        visit,
        "saga.html",
        title=f"Saga {saga_id}",
        saga=saga,
        saga_status=str(saga["status"]),
        steps=steps,
        history=_history(saga),
        actions=actions_for(saga) if visit.signed_in_user.can_act else [],
        notice=DONE.get(done or ""),
        duration=_duration(saga["created_at"], saga["completed_at"]),
    )


def _action(visit: Visit) -> tuple[RepairAction, str | None]:
    slug = visit.request.path_params["action"]
    action = ACTIONS.get(slug)
    if action is None:
        raise ResourceNotFoundError(
            f"no saga action {slug!r}; known: {', '.join(ACTIONS)}",
            resource_type="saga_action",
            resource_id=slug,
        )
    step = visit.request.query_params.get("step") or visit.form.get("step") or None
    if action.on_step and step is None:
        raise InvalidInputError(f"the action {slug!r} needs a step (?step=NAME)", field="step")
    return action, step if action.on_step else None


async def confirm_action(console: Console, visit: Visit) -> Response:
    """The confirmation page of an action: what it does, a reason, Confirm or go back."""
    visit.signed_in_user.require_action_role()
    action, step = _action(visit)
    saga = await _load(console, visit, visit.request.path_params["saga_id"])
    return console.render(
        visit,
        "confirm.html",
        title=action.question,
        saga=saga,
        action=action,
        step=step,
        reason="",
        output="",
        error=None,
    )


async def run_action(console: Console, visit: Visit) -> Response:
    """Carry out a confirmed action, then show the saga (or why it was refused)."""
    user = visit.signed_in_user
    user.require_action_role()
    action, step = _action(visit)
    saga_id = visit.request.path_params["saga_id"]
    reason = visit.form.get("reason", "")
    output_text = visit.form.get("output", "")
    try:
        output = None
        if action.takes_output:
            output = require_finite(
                parse_json_object("output", output_text, required=False), "output"
            )
        request = ActionRequest(
            saga_id=saga_id,
            scope=user.scope(),
            step=step,
            operator=user.operator,
            reason=require_reason(reason),
            output=output,
        )
        await action.run(console.services.coordinator, request)
    except BusinessLogicError as exc:
        saga = await _load(console, visit, saga_id)  # not found: a 404 page instead
        status = 400 if isinstance(exc, InvalidInputError) else problem_status(exc)
        return console.render(
            visit,
            "confirm.html",
            status=status,
            title=action.question,
            saga=saga,
            action=action,
            step=step,
            reason=reason,
            output=output_text,
            error=exc,
        )
    query = urllib.parse.urlencode({"done": action.slug})
    return console.redirect(visit, f"/sagas/{urllib.parse.quote(saga_id, safe='')}?{query}")


def routes(console: Console) -> list[BaseRoute]:
    """The saga routes."""
    return [
        Route("/sagas", console.view(saga_list), methods=["GET"]),
        Route("/sagas/{saga_id}", console.view(saga_page), methods=["GET"]),
        Route("/sagas/{saga_id}/actions/{action}", console.view(confirm_action), methods=["GET"]),
        Route("/sagas/{saga_id}/actions/{action}", console.view(run_action), methods=["POST"]),
    ]
