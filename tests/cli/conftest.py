"""Fixtures of the command-line tests: a tmp SQLite file, seeded data, an abandoned saga."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dotmac_shared.business_logic.operations import seed_demo_data
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from tests.cli.helpers import SEEDED_CUSTOMERS, abandon_service_sagas


@pytest.fixture
def runner() -> CliRunner:
    # Wide enough that Rich does not wrap table cells or lines.
    return CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


async def _seed(url: str, customers: int) -> None:
    factory = create_session_factory(url)
    try:
        await seed_demo_data(factory, customers=customers)
    finally:
        await engine_of(factory).dispose()


@pytest.fixture
def seeded_url(db_url: str) -> str:
    """A migrated database with the demo tenant, plans and a few billable customers."""
    asyncio.run(_seed(db_url, SEEDED_CUSTOMERS))
    return db_url


@pytest.fixture
def abandoned_saga(seeded_url: str) -> str:
    """The id of a service provisioning saga left running with an expired lease."""
    [saga_id] = asyncio.run(abandon_service_sagas(seeded_url))
    return saga_id
