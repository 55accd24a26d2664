"""Fixtures of the command-line tests: a tmp SQLite file, seeded data, an abandoned saga."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dotmac_shared.business_logic.operations import seed_demo_data
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from tests.cli.helpers import SEEDED_CUSTOMERS, abandon_service_sagas
from tests.support.services import create_postgres_database, drop_postgres_database


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


@pytest.fixture(params=["sqlite", "postgresql"])
def seeded_any_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """``seeded_url`` on each backend: a fresh PostgreSQL database, dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cli.db'}"
        asyncio.run(_seed(url, SEEDED_CUSTOMERS))
        yield url
        return
    url = asyncio.run(create_postgres_database())
    try:
        asyncio.run(_seed(url, SEEDED_CUSTOMERS))
        yield url
    finally:
        asyncio.run(drop_postgres_database(url))


@pytest.fixture
def abandoned_saga(seeded_url: str) -> str:
    """The id of a service provisioning saga left running with an expired lease."""
    [saga_id] = asyncio.run(abandon_service_sagas(seeded_url))
    return saga_id
