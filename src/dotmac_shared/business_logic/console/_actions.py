"""The repair actions the saga page offers, each behind a confirmation page.

An action is shown only where it applies (by the saga's status, and for step actions by the
step's); the coordinator still decides: it refuses an action that no longer applies (another
operator acted first) with an error the confirmation page shows. Each action records who
(the signed-in key) and why (the reason typed on the confirmation page).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.sagas import SagaCoordinator, SagaResult, TenantScope

__all__ = ["ACTIONS", "ActionRequest", "RepairAction", "actions_for"]


@dataclasses.dataclass(frozen=True, slots=True)
class ActionRequest:
    """One confirmed action: which saga (and step), who, why.

    Attributes:
        saga_id: The saga.
        scope: The tenants the user reaches (their own, or every one for a platform operator).
        step: The step a step action is about.
        operator: Who (the signed-in key).
        reason: Why, as typed on the confirmation page.
        output: For resolving an incident: the result of the step a person finished.
    """

    saga_id: str
    scope: TenantScope
    step: str | None
    operator: str
    reason: str
    output: Mapping[str, Any] | None = None


Run = Callable[[SagaCoordinator, ActionRequest], Awaitable[SagaResult]]


@dataclasses.dataclass(frozen=True, slots=True)
class RepairAction:
    """An action of the saga page.

    Attributes:
        slug: Its name in URLs.
        label: The button's text.
        question: What the confirmation page asks.
        effect: What happens, in a sentence, on the confirmation page.
        saga_statuses: The saga statuses it is offered in.
        step_statuses: For a step action, the step statuses it is offered for; empty for an
            action on the whole saga.
        run: Carries it out.
        takes_output: Whether the confirmation page asks for a step output (JSON).
    """

    slug: str
    label: str
    question: str
    effect: str
    saga_statuses: frozenset[str]
    step_statuses: frozenset[str]
    run: Run
    takes_output: bool = False

    @property
    def on_step(self) -> bool:
        """Whether the action is about one step."""
        return bool(self.step_statuses)

    def applies(self, saga: Mapping[str, Any]) -> bool:
        """Whether the saga page offers it for ``saga`` (as a whole)."""
        return str(saga["status"]) in self.saga_statuses and not self.on_step

    def steps(self, saga: Mapping[str, Any]) -> list[str]:
        """The steps the saga page offers it for."""
        if not self.on_step or str(saga["status"]) not in self.saga_statuses:
            return []
        return [str(s["name"]) for s in saga["steps"] if str(s["status"]) in self.step_statuses]


def require_reason(reason: str) -> str:
    """The reason of an action: required, at most 500 characters.

    Raises:
        InvalidInputError: Blank or too long (field ``reason``).
    """
    text = reason.strip()
    if "\x00" in text:
        raise InvalidInputError("the reason must not contain NUL characters", field="reason")
    if not text:
        raise InvalidInputError("say why: the reason is recorded with the action", field="reason")
    if len(text) > 500:
        raise InvalidInputError("the reason must be at most 500 characters", field="reason")
    return text


async def _retry_compensation(coordinator: SagaCoordinator, request: ActionRequest) -> SagaResult:
    return await coordinator.retry_compensation(
        request.saga_id, tenant_id=request.scope, operator=request.operator, reason=request.reason
    )


async def _mark_compensated(coordinator: SagaCoordinator, request: ActionRequest) -> SagaResult:
    return await coordinator.mark_step_compensated(
        request.saga_id,
        request.step or "",
        tenant_id=request.scope,
        operator=request.operator,
        reason=request.reason,
    )


async def _retry_step(coordinator: SagaCoordinator, request: ActionRequest) -> SagaResult:
    return await coordinator.retry_step(
        request.saga_id, tenant_id=request.scope, operator=request.operator, reason=request.reason
    )


async def _resolve_incident(coordinator: SagaCoordinator, request: ActionRequest) -> SagaResult:
    return await coordinator.resolve_incident(
        request.saga_id,
        tenant_id=request.scope,
        operator=request.operator,
        reason=request.reason,
        output=request.output,
    )


async def _cancel(coordinator: SagaCoordinator, request: ActionRequest) -> SagaResult:
    return await coordinator.cancel_saga(
        request.saga_id, tenant_id=request.scope, operator=request.operator, reason=request.reason
    )


#: Every action, in the order the saga page shows them.
ACTIONS: Final[Mapping[str, RepairAction]] = {
    action.slug: action
    for action in (
        RepairAction(
            slug="retry-compensation",
            label="Retry compensation",
            question="Retry the failed compensation?",
            effect=(
                "The saga compensates again from the step whose compensation failed, then goes "
                "on backward; it ends compensated, or stops again if a compensation still fails."
            ),
            saga_statuses=frozenset({"compensation_failed"}),
            step_statuses=frozenset(),
            run=_retry_compensation,
        ),
        RepairAction(
            slug="mark-compensated",
            label="Mark compensated",
            question="Mark this step compensated by hand?",
            effect=(
                "Say that a person undid this step outside: it is marked compensated without "
                "running its compensation, and the saga compensates the steps before it."
            ),
            saga_statuses=frozenset({"compensation_failed"}),
            step_statuses=frozenset({"compensation_failed"}),
            run=_mark_compensated,
        ),
        RepairAction(
            slug="retry-step",
            label="Retry step",
            question="Retry the step whose retries ran out?",
            effect=(
                "The exhausted step runs again with its full retry budget, and the saga goes "
                "forward; it stops in incident again if the step still fails."
            ),
            saga_statuses=frozenset({"incident"}),
            step_statuses=frozenset(),
            run=_retry_step,
        ),
        RepairAction(
            slug="resolve-incident",
            label="Resolve incident",
            question="Resolve the incident: the step was finished by hand?",
            effect=(
                "The exhausted step is marked completed with the output given here (what the "
                "steps after it read), and the saga goes forward from the next step."
            ),
            saga_statuses=frozenset({"incident"}),
            step_statuses=frozenset(),
            run=_resolve_incident,
            takes_output=True,
        ),
        RepairAction(
            slug="cancel",
            label="Cancel saga",
            question="Cancel this saga?",
            effect=(
                "The saga stops at its next step boundary and compensates, in reverse, every "
                "step it completed."
            ),
            saga_statuses=frozenset({"running"}),
            step_statuses=frozenset(),
            run=_cancel,
        ),
    )
}


def actions_for(saga: Mapping[str, Any]) -> list[tuple[RepairAction, str | None]]:
    """The (action, step) pairs the saga page offers for ``saga``."""
    offered: list[tuple[RepairAction, str | None]] = []
    for action in ACTIONS.values():
        if action.applies(saga):
            offered.append((action, None))
        offered.extend((action, step) for step in action.steps(saga))
    return offered
