from __future__ import annotations

import datetime as dt
import multiprocessing
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from dotmac_shared.business_logic import InvalidInputError, create_session_factory
from dotmac_shared.business_logic.operations.models import CommissionConfiguration
from dotmac_shared.business_logic.persistence import (
    current_revisions,
    engine_of,
    head_revisions,
    normalize_database_url,
    upgrade_database,
)


async def test_money_and_times_round_trip_exactly(session_factory):
    created = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    async with session_factory() as session, session.begin():
        session.add(
            CommissionConfiguration(
                tenant_id="t1",
                tier="gold",
                partner_id="",
                rate=Decimal("0.1235"),
                created_at=created,
            )
        )
    async with session_factory() as session:
        row = (await session.execute(select(CommissionConfiguration))).scalar_one()
    assert row.rate == Decimal("0.1235") and isinstance(row.rate, Decimal)
    assert row.created_at == created and row.created_at.tzinfo == dt.UTC


async def test_naive_datetime_is_refused_before_anything_is_written(session_factory):
    async with session_factory() as session:
        session.add(
            CommissionConfiguration(
                tenant_id="t1", tier="gold", rate=Decimal("0.1"), created_at=dt.datetime(2026, 1, 1)
            )
        )
        with pytest.raises(Exception, match="naive datetime"):
            await session.commit()
    async with session_factory() as session:
        assert (await session.execute(select(CommissionConfiguration))).first() is None


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    factory = create_session_factory(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        async with factory() as session:
            assert (await session.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await session.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await engine_of(factory).dispose()


def test_plain_urls_get_async_drivers():
    assert normalize_database_url("sqlite:///a.db").drivername == "sqlite+aiosqlite"
    assert normalize_database_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"


def test_default_url_comes_from_environment(monkeypatch):
    monkeypatch.setenv("DOTMAC_DATABASE_URL", "sqlite:///from-env.db")
    assert normalize_database_url().database == "from-env.db"


@pytest.mark.parametrize("url", ["mysql://root@localhost/x", "not a url"])
def test_unsupported_or_malformed_url_is_a_clear_error(url):
    with pytest.raises(InvalidInputError) as info:
        normalize_database_url(url)
    assert info.value.field == "url"


async def test_session_factory_works_inside_a_running_event_loop(tmp_path):
    # create_session_factory migrates synchronously; it must not collide with this loop.
    factory = create_session_factory(f"sqlite:///{tmp_path / 'loop.db'}")
    try:
        async with factory() as session:
            assert (await session.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine_of(factory).dispose()


def _migrate_in_child(url: str) -> None:
    upgrade_database(url)


@pytest.mark.reliability
def test_concurrent_upgrades_from_several_processes_all_succeed(database_url):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_migrate_in_child, args=(database_url,)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    assert current_revisions(database_url) == head_revisions()


async def test_close_session_factory_leaves_no_connection_open_when_called(database_url):
    from sqlalchemy import text

    from dotmac_shared.business_logic import close_session_factory

    factory = create_session_factory(database_url)
    async with factory() as session:
        assert (await session.execute(text("SELECT 1"))).scalar() == 1
    engine = engine_of(factory)
    assert engine.pool.checkedin() >= 1  # the connection went back to the pool, still open
    await close_session_factory(factory)
    assert engine.pool.checkedin() == 0
    async with factory() as session:  # usable again: connects on demand
        assert (await session.execute(text("SELECT 1"))).scalar() == 1
    await close_session_factory(factory)
