"""What the console tests share: a saga whose compensation fails then heals, keys, a client.

:class:`HealingCompensation` is the controllable fake: the compensation of the saga's first
step fails its first ``failures`` calls, then succeeds; the second step always fails, so the
saga compensates and, with the compensation tried once, stops in ``compensation_failed``.
A repair (retry the compensation) then ends it ``compensated``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import httpx

from dotmac_shared.business_logic.http import create_api_key
from dotmac_shared.business_logic.sagas import (
    RetryPolicy,
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStep,
    StepContext,
    StepKind,
)

TENANT = "tenant123"
OTHER_TENANT = "tenant-other"
SAGA_NAME = "port_reservation"
INCIDENT_SAGA = "activation"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclasses.dataclass
class HealingCompensation:
    """A compensation that fails its first ``failures`` calls, then succeeds."""

    failures: int = 1
    calls: int = 0

    async def __call__(self, ctx: StepContext) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("the port service is down")


async def reserve(ctx: StepContext) -> dict[str, Any]:
    return {"port": "ge-0/0/7"}


async def release_nothing(ctx: StepContext) -> None:
    return None


async def charge_declined(ctx: StepContext) -> dict[str, Any]:
    raise RuntimeError("the card was declined")


async def charge_ok(ctx: StepContext) -> dict[str, Any]:
    return {"charged": True}


def failing_definition(release: HealingCompensation) -> SagaDefinition:
    """reserve_port (compensated by ``release``, tried once), then a charge that fails."""
    return SagaDefinition(
        name=SAGA_NAME,
        steps=[
            SagaStep(
                name="reserve_port",
                execute=reserve,
                compensate=release,
                compensation_retry=RetryPolicy(max_attempts=1),
            ),
            SagaStep(name="charge", execute=charge_declined, compensate=release_nothing),
        ],
    )


def passing_definition(name: str) -> SagaDefinition:
    """Two steps that succeed."""
    return SagaDefinition(
        name=name,
        steps=[
            SagaStep(name="reserve_port", execute=reserve, compensate=release_nothing),
            SagaStep(name="charge", execute=charge_ok, compensate=release_nothing),
        ],
    )


async def run_saga(
    coordinator: SagaCoordinator, name: str, saga_id: str, tenant: str | None
) -> str:
    """Run saga ``name`` to its end for ``tenant``; returns its final status."""
    result = await coordinator.execute_saga(
        name, SagaContext(saga_id=saga_id, tenant_id=tenant), {"note": saga_id}
    )
    return str(result["status"])


@dataclasses.dataclass
class HealingStep:
    """A step after the pivot that fails its first ``failures`` calls, then succeeds."""

    failures: int = 1
    calls: int = 0

    async def __call__(self, ctx: StepContext) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("the mail relay is down")
        return {"mailed": True}


def incident_definition(mail: HealingStep) -> SagaDefinition:
    """reserve_port, activate (the pivot), then send_welcome (retriable, one try: ``mail``).

    While ``mail`` fails, the saga stops in ``incident`` after the pivot: nothing is undone.
    """
    return SagaDefinition(
        name=INCIDENT_SAGA,
        steps=[
            SagaStep(
                name="reserve_port",
                execute=reserve,
                compensate=release_nothing,
                kind=StepKind.COMPENSATABLE,
            ),
            SagaStep(
                name="activate", execute=charge_ok, compensate=release_nothing, kind=StepKind.PIVOT
            ),
            SagaStep(
                name="send_welcome",
                execute=mail,
                kind=StepKind.RETRIABLE,
                retry=RetryPolicy(max_attempts=1, initial_delay=0, jitter=0),
            ),
        ],
    )


@dataclasses.dataclass(frozen=True)
class Keys:
    """A token per kind of console user."""

    admin: str  # tenant123's admin
    operator: str  # tenant123's operator (read only)
    other: str  # another tenant's admin
    platform: str  # a platform operator


async def make_keys(factory: Any) -> Keys:
    """Keys of two tenants and a platform operator's."""
    return Keys(
        admin=(await create_api_key(factory, TENANT, role="admin", name="ops")).token,
        operator=(await create_api_key(factory, TENANT, role="operator")).token,
        other=(await create_api_key(factory, OTHER_TENANT, role="admin")).token,
        platform=(await create_api_key(factory, "platform", role="platform")).token,
    )


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token of a console page's forms."""
    match = _CSRF.search(page.text)
    assert match is not None, "the page has no form with a CSRF token"
    return match.group(1)


class ConsoleClient:
    """An httpx client on the console that signs in and fills in the CSRF token."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.token = ""

    async def get(self, path: str, **params: Any) -> httpx.Response:
        response = await self.client.get(f"/console{path}", params=params or None)
        if "csrf_token" in response.text:
            self.token = csrf_of(response)
        return response

    async def post(self, path: str, data: dict[str, str], *, csrf: bool = True) -> httpx.Response:
        form = {"csrf_token": self.token, **data} if csrf else data
        return await self.client.post(f"/console{path}", data=form)

    async def sign_in(self, key: str) -> httpx.Response:
        await self.get("/login")
        response = await self.post("/login", {"api_key": key})
        assert response.status_code == 303, response.text
        await self.get("/sagas")
        return response
