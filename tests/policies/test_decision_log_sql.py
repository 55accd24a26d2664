"""The decision log in the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.exceptions import PersistenceError
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from dotmac_shared.business_logic.persistence.models import PolicyDecisionEntry
from dotmac_shared.business_logic.policies import (
    REDACTED,
    PolicyContext,
    PolicyEngine,
    SqlDecisionRecorder,
)

NAME = "shop.checkout"
DOCUMENT: dict[str, Any] = {
    "name": NAME,
    "version": "2.0.0",
    "rules": [
        {"name": "adult", "field": "age", "operator": "gte", "value": 18},
        {"name": "card_present", "field": "card.number", "operator": "exists"},
    ],
}
CONTEXT = PolicyContext(tenant_id="t1", user_id="u1", attributes={"region": "eu"})


def engine_with(recorder: SqlDecisionRecorder) -> PolicyEngine:
    engine = PolicyEngine(recorder=recorder)
    engine.register_policy(DOCUMENT)
    return engine


async def rows(factory) -> list[PolicyDecisionEntry]:
    async with factory() as session:
        result = await session.execute(select(PolicyDecisionEntry).order_by(PolicyDecisionEntry.id))
        return list(result.scalars())


async def test_sql_rows_carry_every_field_with_redaction_when_the_recorder_closes(
    session_factory,
):
    clock = ManualClock()
    async with SqlDecisionRecorder(
        session_factory, redact=["card.number"], clock=clock, flush_interval=60
    ) as log:
        engine = engine_with(log)
        engine.evaluate(NAME, {"age": 16, "card": {"number": "4111"}}, CONTEXT)
        engine.is_allowed(NAME, {"age": 40, "card": {"number": "4222"}})
    denied, allowed = await rows(session_factory)
    assert (denied.policy_name, denied.policy_version) == (NAME, "2.0.0")
    assert denied.decision == "DENY" and denied.failed_rules == ["adult"]
    assert denied.input == {"age": 16, "card": {"number": REDACTED}}
    assert denied.tenant_id == "t1" and denied.context["attributes"] == {"region": "eu"}
    assert denied.recorded_at == clock.now() and len(denied.content_hash) == 64
    assert allowed.decision == "ALLOW" and allowed.failed_rules == []
    assert allowed.context is None and allowed.tenant_id is None


async def test_sql_flush_writes_everything_in_batches_when_called(session_factory):
    async with SqlDecisionRecorder(session_factory, batch_size=7, flush_interval=60) as log:
        engine = engine_with(log)
        for age in range(50):
            engine.evaluate(NAME, {"age": age, "card": {"number": "1"}})
        assert await log.flush() == 50
        assert log.pending == 0
        assert [row.input["age"] for row in await rows(session_factory)] == list(range(50))


async def test_sql_background_task_writes_a_batch_when_batch_size_is_reached(session_factory):
    async with SqlDecisionRecorder(session_factory, batch_size=5, flush_interval=60) as log:
        engine = engine_with(log)
        for _ in range(5):
            engine.evaluate(NAME, {"age": 30, "card": {"number": "1"}})
        for _ in range(500):  # bounded: 5 s
            if len(await rows(session_factory)) == 5:
                break
            await asyncio.sleep(0.01)
        assert len(await rows(session_factory)) == 5


async def test_sql_sampling_zero_records_nothing_and_one_everything(session_factory):
    async with SqlDecisionRecorder(session_factory, sample_rate=0) as none:
        engine = engine_with(none)
        for _ in range(20):
            engine.evaluate(NAME, {"age": 30})
    assert await rows(session_factory) == []
    async with SqlDecisionRecorder(session_factory, sample_rate=1) as every:
        engine.recorder = every
        for _ in range(20):
            engine.evaluate(NAME, {"age": 30})
    assert len(await rows(session_factory)) == 20


async def test_sql_stores_inputs_with_nul_and_lone_surrogates_when_they_are_hostile(
    session_factory,
):
    async with SqlDecisionRecorder(session_factory) as log:
        engine_with(log).evaluate(NAME, {"age": 30, "note": "a\x00b \ud800", "k\x00": 1})
    (row,) = await rows(session_factory)
    assert row.input["note"] == "a\ufffdb ?" and row.input["k\ufffd"] == 1


async def test_sql_failed_write_keeps_records_and_raises_when_the_table_is_missing(
    database_url,
):
    factory = create_session_factory(database_url, migrate=False)  # no tables at all
    try:
        log = SqlDecisionRecorder(factory, flush_interval=60)
        engine_with(log).evaluate(NAME, {"age": 30})
        with pytest.raises(PersistenceError, match="cannot write the decision log to database"):
            await log.flush()
        assert log.pending == 1
    finally:
        await engine_of(factory).dispose()
