"""Fixtures shared by every test: databases on both backends, Redis."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis_async
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from tests.support.migrated import MigratedTemplates, run_in_new_loop
from tests.support.services import (
    create_postgres_database,
    redis_client,
    sqlite_url,
)

BACKENDS = ["sqlite", "postgresql"]

# pytest-xdist starts its workers with COLUMNS=80 (for the reports they send, which the
# controller prints at its own width). The CLI's Rich consoles, made when the CLI is first
# imported, would read it and keep 80 columns for good, ignoring the wider COLUMNS the CLI
# tests give CliRunner; without xdist the variable is unset, as in a user's shell.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.pop("COLUMNS", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every reliability test in one pytest-xdist group, so they run one after another.

    Each of them starts several processes that race or get killed; two at once on two
    cores would starve each other's workers. ``make test`` goes further and runs them in
    a serial pass of their own after the parallel one; the group covers ``pytest -n 2``
    run by hand.
    """
    for item in items:
        if item.get_closest_marker("reliability") is not None:
            item.add_marker(pytest.mark.xdist_group("reliability"))


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    """This test process's migrated template databases, built on first use."""
    templates = MigratedTemplates(tmp_path_factory.mktemp("templates"))
    yield templates
    run_in_new_loop(templates.drop)


@pytest.fixture(params=BACKENDS)
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_templates: MigratedTemplates
) -> AsyncIterator[str]:
    """A database of each backend, dropped afterwards.

    Empty and unmigrated, unless the test also uses ``session_factory``: then it is a copy
    of a migrated template (see ``tests/support/migrated.py``), the same schema Alembic
    would build, without running every revision again for each test.
    """
    migrated = "session_factory" in request.fixturenames
    if request.param == "sqlite":
        yield migrated_templates.sqlite_copy(tmp_path) if migrated else sqlite_url(tmp_path)
        return
    if migrated:
        url = await migrated_templates.postgres_copy()
    else:
        url = await create_postgres_database()
    try:
        yield url
    finally:
        migrated_templates.drop_later(url)


@pytest.fixture
async def session_factory(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The spec's ``session_factory`` on a freshly migrated database of each backend."""
    factory = create_session_factory(database_url)
    try:
        yield factory
    finally:
        await engine_of(factory).dispose()


@pytest.fixture
async def redis() -> AsyncIterator[redis_async.Redis]:
    """A client of the test Redis; tests namespace their keys with a random prefix."""
    client = await redis_client()
    try:
        yield client
    finally:
        await client.aclose()
