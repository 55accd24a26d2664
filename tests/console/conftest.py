"""The console tests' app: demo data, keys, the sagas' fakes, a client per user."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml

from dotmac_shared.business_logic.http import create_app
from dotmac_shared.business_logic.operations import seed_demo_data
from dotmac_shared.business_logic.policies import PolicyEngine
from tests.console.support import (
    ConsoleClient,
    HealingCompensation,
    Keys,
    failing_definition,
    make_keys,
    passing_definition,
)

POLICY_V1 = """
name: console.discount
version: 1.0.0
description: Who gets a discount
rules:
  - name: loyal
    field: years
    operator: gte
    value: 2
"""
POLICY_V2 = POLICY_V1.replace("version: 1.0.0", "version: 1.1.0").replace("value: 2", "value: 3")


class Setup:
    """The app, its keys, the saga fake, and a client per user."""

    def __init__(self, app: Any, keys: Keys, release: HealingCompensation) -> None:
        self.app = app
        self.keys = keys
        self.release = release
        self.transport = httpx.ASGITransport(app=app)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, base_url="http://console.test")

    async def signed_in(self, key: str) -> ConsoleClient:
        console = ConsoleClient(self.client())
        await console.sign_in(key)
        return console


@pytest.fixture
async def setup(session_factory) -> AsyncIterator[Setup]:
    await seed_demo_data(session_factory, customers=3)
    keys = await make_keys(session_factory)
    release = HealingCompensation(failures=1)
    engine = PolicyEngine()
    engine.registry.register(yaml.safe_load(POLICY_V1))
    engine.registry.register(yaml.safe_load(POLICY_V2))
    app = create_app(session_factory, policy_engine=engine)
    app.state.dotmac.coordinator.register_saga(failing_definition(release))
    app.state.dotmac.coordinator.register_saga(passing_definition("welcome_mail"))
    async with app.router.lifespan_context(app):
        yield Setup(app, keys, release)
        await asyncio.gather(*app.state.dotmac.background, return_exceptions=True)
