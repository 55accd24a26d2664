"""Policies: the list, a policy's versions, the diff of two, and evaluating one on an input.

A tenant's user sees what the tenant sees (its own versions where it has them, else the
global ones); a platform operator sees the global policies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dotmac_shared.business_logic.console._forms import parse_json_object
from dotmac_shared.business_logic.exceptions import BusinessLogicError
from dotmac_shared.business_logic.http._problems import problem_status
from dotmac_shared.business_logic.http._routes_policies import require_finite
from dotmac_shared.business_logic.policies import PolicyContext

if TYPE_CHECKING:
    from dotmac_shared.business_logic.console._app import Console, Visit

__all__ = ["routes"]


def _tenant(visit: Visit) -> str | None:
    user = visit.signed_in_user
    return None if user.is_platform else user.principal.tenant_id


async def policy_list(console: Console, visit: Visit) -> Response:
    """Every policy the user's tenant sees, with its versions."""
    registry = console.services.policy_engine.registry
    policies = [
        {"policy": policy, "versions": registry.versions(policy.name, tenant_id=policy.tenant_id)}
        for policy in registry.list(tenant_id=_tenant(visit))
    ]
    return console.render(visit, "policies.html", title="Policies", policies=policies)


def _page(console: Console, visit: Visit, **extra: Any) -> dict[str, Any]:
    """The policy page's context: the policy, its versions and the diff asked for."""
    registry = console.services.policy_engine.registry
    name = visit.request.path_params["name"]
    policy = registry.get(name, tenant_id=_tenant(visit))
    versions = [
        registry.get(name, version, tenant_id=policy.tenant_id)
        for version in registry.versions(name, tenant_id=policy.tenant_id)
    ]
    query = visit.request.query_params
    older = query.get("from") or (versions[-2].version if len(versions) > 1 else policy.version)
    newer = query.get("to") or policy.version
    diff = None
    if "from" in query or "to" in query:
        text = registry.diff(name, older, newer, tenant_id=policy.tenant_id)
        diff = text.splitlines()
    context: dict[str, Any] = {
        "title": f"Policy {name}",
        "policy": policy,
        "versions": versions,
        "diff_from": older,
        "diff_to": newer,
        "diff": diff,
        "result": None,
        "error": None,
        "values": {"version": policy.version, "input": "{\n  \n}", "attributes": ""},
    }
    context.update(extra)
    return context


async def policy_page(console: Console, visit: Visit) -> Response:
    """A policy: its versions, a diff of two, and the evaluation form."""
    return console.render(visit, "policy.html", **_page(console, visit))


async def evaluate(console: Console, visit: Visit) -> Response:
    """Evaluate the policy on the form's input; show the decision with every rule's outcome."""
    user = visit.signed_in_user
    form = visit.form
    values = {
        "version": form.get("version", ""),
        "input": form.get("input", ""),
        "attributes": form.get("attributes", ""),
    }
    try:
        data = require_finite(parse_json_object("input", values["input"], required=True), "input")
        attributes = require_finite(
            parse_json_object("attributes", values["attributes"], required=False), "attributes"
        )
        context = PolicyContext(
            # A platform operator's own tenant selects no override: the global versions.
            tenant_id=user.principal.tenant_id,
            user_id=user.principal.user_id,
            operation="console.evaluate",
            attributes=attributes,
        )
        result = console.services.policy_engine.evaluate(
            visit.request.path_params["name"], data, context, version=values["version"] or None
        )
    except BusinessLogicError as exc:
        page = _page(console, visit, error=exc, values=values)
        return console.render(visit, "policy.html", status=problem_status(exc), **page)
    page = _page(console, visit, result=result.to_dict(), values=values)
    return console.render(visit, "policy.html", **page)


def routes(console: Console) -> list[BaseRoute]:
    """The policy routes."""
    return [
        Route("/policies", console.view(policy_list), methods=["GET"]),
        Route("/policies/{name}", console.view(policy_page), methods=["GET"]),
        Route("/policies/{name}/evaluate", console.view(evaluate), methods=["POST"]),
    ]
