"""What every route of the API shares: the session factory, coordinator, engines and clock."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.clock import Clock
from dotmac_shared.business_logic.http._auth import Principal, current_principal, require_role
from dotmac_shared.business_logic.http._problems import PROBLEM_CONTENT_TYPE
from dotmac_shared.business_logic.observability._log import get_logger
from dotmac_shared.business_logic.policies import PlanEligibilityEngine, PolicyEngine
from dotmac_shared.business_logic.sagas import SagaCoordinator

__all__ = ["PROBLEM_RESPONSES", "Admin", "ApiServices", "Caller", "Problem", "Services"]

_logger = get_logger(__name__)


class Problem(BaseModel):
    """An RFC 9457 Problem Details body (``application/problem+json``).

    Besides these members, an error's structured context (``field``, ``failed_rules``,
    ``reasons``, ...) is included when it has one.
    """

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    code: str
    instance: str | None = None
    correlation_id: str


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": Problem.model_json_schema()}},
    }


#: The errors every route may answer with, documented in OpenAPI as Problem Details.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem("A required Idempotency-Key is missing or malformed."),
    401: _problem("No valid API key (authentication_required; with WWW-Authenticate)."),
    403: _problem("The key's role does not allow this (permission_denied)."),
    404: _problem("Not found (another tenant's resources are not found either)."),
    409: _problem("A request with this Idempotency-Key is in progress, or a conflict."),
    413: _problem("The request body is larger than the Idempotency-Key middleware keeps."),
    422: _problem("The request is invalid, or was refused by a business rule."),
    500: _problem("The server failed; quote the correlation_id."),
    502: _problem("A system a provisioning saga drives failed; the saga was compensated."),
    503: _problem("The database is unavailable; retry later."),
    504: _problem("A step or saga ran out of time."),
}


@dataclasses.dataclass
class ApiServices:
    """The collaborators of one API app (``app.state.dotmac``).

    Attributes:
        session_factory: The migrated session factory.
        coordinator: A coordinator with the shipped sagas registered.
        policy_engine: Every shipped policy, registered.
        eligibility: Plan eligibility on ``policy_engine``.
        clock: Where times come from.
        lease_seconds: The lease of the sagas the API starts.
        background: Work started by requests that outlives them (billing runs); kept
            referenced until done, cancelled on shutdown (a worker then finishes it).
    """

    session_factory: async_sessionmaker[AsyncSession]
    coordinator: SagaCoordinator
    policy_engine: PolicyEngine
    eligibility: PlanEligibilityEngine
    clock: Clock
    lease_seconds: float
    background: set[asyncio.Task[Any]] = dataclasses.field(default_factory=set)

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold ``task`` until it ends (the event loop keeps only weak references)."""
        self.background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if task.cancelled():
            return  # shut down: the saga's lease expires and a worker finishes it
        error = task.exception()
        if error is not None:
            _logger.error("background task %s failed", task.get_name(), exc_info=error)


def _services(request: Request) -> ApiServices:
    services: ApiServices = request.app.state.dotmac
    return services


Services = Annotated[ApiServices, Depends(_services)]
Caller = Annotated[Principal, Depends(current_principal)]
Admin = Annotated[Principal, Depends(require_role("admin"))]
