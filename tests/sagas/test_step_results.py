"""Step results: Decimal, datetime, date and UUID round-trip; the unstorable fail their step."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from dotmac_shared.business_logic.persistence import engine_of
from dotmac_shared.business_logic.sagas import (
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStep,
    SqlSagaStore,
)
from dotmac_shared.business_logic.sagas._data import MAX_NESTING, MAX_STEP_RESULT_BYTES
from tests.sagas.test_store import REFUSE_BOOM

TENANT = "tenant-a"


def rich_result() -> dict:
    now = dt.datetime.now(dt.UTC)
    return {
        "amount": Decimal("12.50"),
        "charged_at": now,
        "due": now.date() + dt.timedelta(days=30),
        "payment_id": uuid.uuid4(),
        "lines": [{"net": Decimal("10.00"), "tax": Decimal("2.50")}],
    }


async def test_decimal_datetime_date_and_uuid_round_trip_through_every_view(session_factory):
    produced = rich_result()
    seen: dict[str, object] = {}
    refunded: list[object] = []

    async def price(ctx):
        return produced

    async def refund(ctx):
        refunded.append(ctx.result)

    async def bill(ctx):
        seen["data"] = ctx.data["amount"]
        seen["results"] = ctx.step_results["price"]
        raise RuntimeError("card declined")  # then price is compensated with its result

    definition = SagaDefinition(
        name="priced",
        steps=[
            SagaStep(name="price", execute=price, compensate=refund),
            SagaStep(name="bill", execute=bill),
        ],
    )
    coordinator = SagaCoordinator(session_factory, lease_seconds=30)
    coordinator.register_saga(definition)
    ctx = SagaContext(saga_id=str(uuid.uuid4()), tenant_id=TENANT)
    outcome = await coordinator.execute_saga(saga_name="priced", context=ctx)
    assert outcome["status"] == "compensated"
    assert outcome["step_results"]["price"] == produced
    assert seen == {"data": Decimal("12.50"), "results": produced}
    assert refunded == [produced]
    assert type(refunded[0]["payment_id"]) is uuid.UUID
    assert refunded[0]["charged_at"].tzinfo is not None

    # Read back by another coordinator: the same values, of the same types.
    other = SagaCoordinator(session_factory, lease_seconds=30)
    other.register_saga(definition)
    replayed = await other.execute_saga(saga_name="priced", context=ctx)
    assert replayed["step_results"]["price"] == produced
    assert (await other.get_saga(ctx.saga_id, tenant_id=TENANT))["steps"][0]["result"] == produced

    # Stored in the idempotency codec's tagged form.
    stored = await SqlSagaStore(session_factory).load(ctx.saga_id, tenant_id=TENANT)
    raw = stored.steps["price"].result
    assert raw["amount"] == {"$decimal": "12.50"}
    assert raw["payment_id"] == {"$uuid": str(produced["payment_id"])}
    assert raw["charged_at"] == {"$datetime": produced["charged_at"].isoformat()}
    assert raw["due"] == {"$date": produced["due"].isoformat()}


def self_referential() -> dict:
    value: dict = {}
    value["me"] = value
    return value


def nested(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"in": value}
    return value


UNSTORABLE = {
    "object": ({"when": object()}, "type object is not supported"),
    "nan": ({"total": float("nan")}, "not a finite number"),
    "infinite decimal": ({"total": Decimal("Infinity")}, "not a finite number"),
    "naive datetime": ({"at": dt.datetime.now(dt.UTC).replace(tzinfo=None)}, "naive datetime"),
    "set": ({"tags": {"a"}}, "type set is not supported"),
    "tag key": ({"$decimal": "1"}, "reserved by the codec"),
    "nul": ({"note": "a\x00b"}, "NUL character"),
    "too large": ({"blob": "x" * MAX_STEP_RESULT_BYTES}, "bytes as JSON; the limit is"),
    "too deep": (nested(MAX_NESTING + 1), f"nested deeper than {MAX_NESTING} levels"),
    "self-referential": (self_referential(), f"nested deeper than {MAX_NESTING} levels"),
}


@pytest.mark.parametrize("case", list(UNSTORABLE))
async def test_result_that_cannot_be_stored_fails_its_step_before_it_is_recorded_done(
    session_factory, case
):
    value, message = UNSTORABLE[case]
    engine = engine_of(session_factory)
    async with engine.begin() as conn:  # the database refuses any "boom completed" write
        for ddl in REFUSE_BOOM[engine.dialect.name]:
            await conn.exec_driver_sql(ddl)
    undone: list[str] = []

    async def fine(ctx):
        return {"ok": True}

    async def undo(ctx):
        undone.append(ctx.step_name)

    async def boom(ctx):
        return value

    coordinator = SagaCoordinator(session_factory, lease_seconds=30)
    coordinator.register_saga(
        SagaDefinition(
            name="unstorable",
            steps=[
                SagaStep(name="fine", execute=fine, compensate=undo),
                SagaStep(name="boom", execute=boom, compensate=undo),
            ],
        )
    )
    ctx = SagaContext(saga_id=str(uuid.uuid4()), tenant_id=TENANT)
    outcome = await coordinator.execute_saga(saga_name="unstorable", context=ctx)
    assert outcome["status"] == "compensated" and outcome["failed_step"] == "boom"
    assert outcome["error"]["code"] == "invalid_input"
    assert outcome["error"]["context"]["field"] == "boom"
    assert "step boom result" in outcome["error"]["message"]
    assert message in outcome["error"]["message"]
    assert undone == ["boom", "fine"]
    saga = await coordinator.get_saga(ctx.saga_id, tenant_id=TENANT)
    step = saga["steps"][1]
    assert step["status"] == "compensated" and step["result"] is None
    assert message in step["error"]["message"]
