"""Helpers for the ``/v1`` API tests: an app with its lifespan, keys of two tenants, a client."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from dotmac_shared.business_logic.http import create_api_key, create_app
from dotmac_shared.business_logic.operations import seed_demo_data
from dotmac_shared.business_logic.operations._seed import DEMO_TENANT_ID

OTHER_TENANT = "tenant-other"
PROBLEM = "application/problem+json"


@dataclasses.dataclass
class Api:
    """A running app, a client on it, and a token per role and tenant."""

    app: Any
    client: httpx.AsyncClient
    operator: str
    admin: str
    other: str

    def auth(self, token: str, **extra: str) -> dict[str, str]:
        """Headers carrying ``token`` (and ``extra``)."""
        return {"Authorization": f"Bearer {token}", **extra}

    async def settle(self) -> None:
        """Wait for the background work requests started (billing runs)."""
        await asyncio.gather(*self.app.state.dotmac.background, return_exceptions=True)


@asynccontextmanager
async def running_api(
    session_factory: Any, *, seed: bool = True, **options: Any
) -> AsyncIterator[Api]:
    """The app on ``session_factory`` with the demo data and three keys, its lifespan running."""
    if seed:
        await seed_demo_data(session_factory)
    operator = await create_api_key(session_factory, DEMO_TENANT_ID, role="operator")
    admin = await create_api_key(session_factory, DEMO_TENANT_ID, role="admin")
    other = await create_api_key(session_factory, OTHER_TENANT, role="admin")
    app = create_app(session_factory, **options)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            api = Api(app, client, operator.token, admin.token, other.token)
            yield api
            await api.settle()
