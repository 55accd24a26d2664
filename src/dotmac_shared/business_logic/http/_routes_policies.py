"""``/v1/policies``: list the policies a tenant sees, evaluate one, diff two versions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.http._state import PROBLEM_RESPONSES, Caller, Services
from dotmac_shared.business_logic.observability._context import get_correlation_id
from dotmac_shared.business_logic.policies import PolicyContext

__all__ = ["PolicyEvaluation", "PolicyInfo", "PolicyVersionDiff", "require_finite", "router"]

router = APIRouter(prefix="/v1/policies", tags=["policies"], responses=PROBLEM_RESPONSES)

#: Deepest nesting accepted in an evaluation's input (policy inputs are records).
_MAX_DEPTH = 32


def require_finite(value: Any, field: str, depth: int = 0) -> Any:
    """Return ``value`` if it holds no NaN or infinity and nests at most 32 deep.

    JSON has no NaN; Python's parser accepts it anyway. A non-finite number is the client's
    error, refused here, never a failure while answering.

    Raises:
        InvalidInputError: Naming where the bad value is.
    """
    if depth > _MAX_DEPTH:
        raise InvalidInputError(f"{field} nests deeper than {_MAX_DEPTH} levels", field=field)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"{field} is {value}: numbers must be finite", field=field)
    if isinstance(value, Mapping):
        for key, item in value.items():
            require_finite(item, f"{field}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            require_finite(item, f"{field}[{index}]", depth + 1)
    return value


class PolicyInfo(BaseModel):
    """A policy as the caller's tenant sees it (its latest version in force for them)."""

    name: str
    version: str = Field(description="The version an evaluation without a pin uses.")
    versions: list[str] = Field(description="Every version, oldest first.")
    description: str | None
    tenant_id: str | None = Field(description="The owning tenant, or null for a global policy.")


class PolicyEvaluationRequest(BaseModel):
    """What to evaluate a policy against."""

    input: dict[str, Any] = Field(description="The record the rules read (e.g. a customer).")
    version: str | None = Field(None, description="Pin a version; the latest by default.")
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Extra context, read by rules as context.<key>."
    )


class PolicyEvaluation(BaseModel):
    """A policy's decision with its full explanation (``PolicyResult.to_dict()``)."""

    policy_name: str
    policy_version: str
    decision: str = Field(description="ALLOW, DENY or REQUIRE_APPROVAL.")
    passed: bool
    score: float
    threshold: float | None
    in_effect: bool
    reasons: list[str]
    failed_rules: list[str]
    rule_results: list[dict[str, Any]]
    evaluated_at: str
    duration_us: float
    content_hash: str
    tenant_id: str | None
    policy_tenant_id: str | None


class PolicyVersionDiff(BaseModel):
    """A unified diff between two versions' canonical YAML."""

    policy_name: str
    from_version: str
    to_version: str
    identical: bool
    diff: str


@router.get("", response_model=list[PolicyInfo], summary="List the policies in force")
async def list_policies(caller: Caller, services: Services) -> list[PolicyInfo]:
    """Every policy the caller's tenant sees: its own versions where it has them."""
    registry = services.policy_engine.registry
    infos = []
    for policy in registry.list(tenant_id=caller.tenant_id):
        versions = registry.versions(policy.name, tenant_id=policy.tenant_id)
        infos.append(
            PolicyInfo(
                name=policy.name,
                version=policy.version,
                versions=versions,
                description=policy.description,
                tenant_id=policy.tenant_id,
            )
        )
    return infos


@router.post("/{name}/evaluate", response_model=PolicyEvaluation, summary="Evaluate a policy")
async def evaluate_policy(
    name: str, request: PolicyEvaluationRequest, caller: Caller, services: Services
) -> dict[str, Any]:
    """Evaluate policy ``name`` against ``input``; missing fields are failed rules."""
    require_finite(request.input, "input")
    require_finite(request.attributes, "attributes")
    context = PolicyContext(
        tenant_id=caller.tenant_id,
        user_id=caller.user_id,
        operation="api.evaluate",
        correlation_id=get_correlation_id(),
        attributes=request.attributes,
    )
    result = services.policy_engine.evaluate(name, request.input, context, version=request.version)
    return result.to_dict()


@router.get(
    "/{name}/diff", response_model=PolicyVersionDiff, summary="Diff two versions of a policy"
)
async def diff_policy(
    name: str,
    caller: Caller,
    services: Services,
    from_version: Annotated[str, Query(alias="from", description="The older version.")],
    to_version: Annotated[str, Query(alias="to", description="The newer version.")],
) -> PolicyVersionDiff:
    """A unified diff of two versions (empty when they are identical)."""
    text = services.policy_engine.registry.diff(
        name, from_version, to_version, tenant_id=caller.tenant_id
    )
    return PolicyVersionDiff(
        policy_name=name,
        from_version=from_version,
        to_version=to_version,
        identical=not text,
        diff=text,
    )
