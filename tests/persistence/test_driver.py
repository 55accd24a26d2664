"""The fast lane: compiled SELECTs on the driver connection decode as SQLAlchemy does."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util.concurrency import greenlet_spawn

from dotmac_shared.business_logic import InvalidInputError
from dotmac_shared.business_logic.persistence import create_engine
from dotmac_shared.business_logic.persistence._driver import (
    CompiledSelect,
    driver_connection,
    pooled_driver_connection,
)
from dotmac_shared.business_logic.persistence._sqlite_driver import SqliteLane
from dotmac_shared.business_logic.persistence._types import JSONDocument, Money, UTCDateTime
from tests.support.services import sqlite_url

_META = MetaData()
_ROWS = Table(
    "fast_rows",
    _META,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), nullable=True),
    Column("amount", Money(), nullable=True),
    Column("at", UTCDateTime(), nullable=True),
    Column("doc", JSONDocument, nullable=True),
)
_BY_ID = select(_ROWS).where(_ROWS.c.id == bindparam("w_id"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(_META.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _through_sqlalchemy(engine: AsyncEngine, row_id: int) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(_BY_ID, {"w_id": row_id})
        return [dict(row) for row in result.mappings()]


# PostgreSQL's jsonb cannot hold U+0000: no text here has it.
_TEXT = st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**9), 10**9) | st.text(_TEXT, max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(_TEXT, max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
rows = st.fixed_dictionaries(
    {
        "name": st.none()
        | st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=40),
        "amount": st.none() | st.decimals(min_value=-(10**9), max_value=10**9, places=4),
        "at": st.none()
        | st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1)).map(
            lambda d: d.replace(tzinfo=dt.UTC)
        ),
        "doc": st.none() | st.dictionaries(st.text(_TEXT, max_size=5), json_values, max_size=4),
    }
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=rows)
async def test_rows_decode_as_sqlalchemy_decodes_them_when_values_are_arbitrary(engine, values):
    async with engine.begin() as conn:
        await conn.execute(_ROWS.delete())
        await conn.execute(_ROWS.insert().values(id=1, **values))
    fast = await CompiledSelect(engine, _BY_ID).all(w_id=1)
    assert fast == await _through_sqlalchemy(engine, 1)
    assert fast[0]["amount"] == values["amount"]
    assert fast[0]["at"] == values["at"]
    assert fast[0]["doc"] == values["doc"]


async def test_no_rows_is_an_empty_list_when_nothing_matches(engine):
    assert await CompiledSelect(engine, _BY_ID).all(w_id=42) == []


async def test_every_row_is_returned_when_several_match(engine):
    async with engine.begin() as conn:
        await conn.execute(
            _ROWS.insert(), [{"id": i, "amount": Decimal(i), "name": f"n{i}"} for i in (1, 2, 3)]
        )
    query = (
        select(_ROWS.c.id, _ROWS.c.amount)
        .where(_ROWS.c.id >= bindparam("low"))
        .order_by(_ROWS.c.id)
    )
    got = await CompiledSelect(engine, query).all(low=2)
    assert got == [{"id": 2, "amount": Decimal(2)}, {"id": 3, "amount": Decimal(3)}]


async def test_driver_error_is_a_sqlalchemy_error_when_the_statement_fails(engine):
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE fast_rows"))
    with pytest.raises(DBAPIError, match="fast_rows"):
        await CompiledSelect(engine, _BY_ID).all(w_id=1)


async def test_connection_is_discarded_when_the_body_fails_or_is_interrupted(engine):
    # A statement cut short may leave its connection inside a transaction: it must not go
    # back to the pool for the next caller.
    async with driver_connection(engine) as healthy:
        pass
    async with driver_connection(engine) as again:
        assert again is healthy  # returned to the pool and reused
    with pytest.raises(asyncio.CancelledError):
        async with driver_connection(engine) as interrupted:
            raise asyncio.CancelledError
    async with driver_connection(engine) as fresh:
        assert fresh is not interrupted
    assert await CompiledSelect(engine, _BY_ID).all(w_id=1) == []


async def test_connection_is_discarded_when_the_body_fails_in_the_greenlet_form(engine):
    def checkout() -> Any:
        with pooled_driver_connection(engine) as raw:
            return raw

    def failing() -> Any:
        with pooled_driver_connection(engine) as raw:
            failed.append(raw)
            raise RuntimeError("cut short")

    failed: list[Any] = []
    healthy = await greenlet_spawn(checkout)
    assert await greenlet_spawn(checkout) is healthy  # returned to the pool and reused
    with pytest.raises(RuntimeError, match="cut short"):
        await greenlet_spawn(failing)
    assert failed == [healthy]
    assert await greenlet_spawn(checkout) is not healthy
    assert await CompiledSelect(engine, _BY_ID).all(w_id=1) == []


async def test_parameters_are_bound_as_sqlalchemy_binds_them_when_they_need_processing(engine):
    at = dt.datetime(2026, 11, 25, 12, 30, tzinfo=dt.UTC)
    async with engine.begin() as conn:
        await conn.execute(_ROWS.insert(), [{"id": 1, "at": at}, {"id": 2, "at": None}])
    query = select(_ROWS.c.id).where(_ROWS.c.at == bindparam("at", type_=UTCDateTime()))
    assert await CompiledSelect(engine, query).all(at=at) == [{"id": 1}]


async def test_missing_parameter_is_a_clear_error_when_a_bind_is_not_given(engine):
    with pytest.raises(InvalidInputError, match="w_id"):
        await CompiledSelect(engine, _BY_ID).all(id=1)


async def test_select_runs_on_the_event_loop_thread_when_sqlite_is_idle(tmp_path, monkeypatch):
    # An idempotent replay on SQLite: no trip to a worker thread (nor to aiosqlite's).
    engine = create_engine(sqlite_url(tmp_path))
    trips: list[Any] = []
    original = SqliteLane.in_thread

    async def counted(self: SqliteLane, work: Any) -> Any:
        trips.append(work)
        return await original(self, work)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(_META.create_all)
            await conn.execute(_ROWS.insert().values(id=1, name="one"))
        monkeypatch.setattr(SqliteLane, "in_thread", counted)
        select_by_id = CompiledSelect(engine, _BY_ID)
        assert [row["name"] for row in await select_by_id.all(w_id=1)] == ["one"]
        assert trips == []
    finally:
        await engine.dispose()
