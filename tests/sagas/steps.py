"""Steps for saga tests: recording steps (each writes a row keyed by its idempotency key),
and a saga whose compensation always fails."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.persistence.models import SagaStepExecution
from dotmac_shared.business_logic.sagas import (
    RetryPolicy,
    SagaDefinition,
    SagaStep,
    StepAction,
    StepContext,
)

STEP_TABLE = SagaStepExecution.__tablename__

EFFECTS_DDL = (
    "CREATE TABLE IF NOT EXISTS saga_test_effects "
    "(key VARCHAR(255) PRIMARY KEY, saga_id VARCHAR(64))"
)


#: Triggers by which the database refuses to record a step named "boom" as completed: a
#: write the database itself rejects (not a lost connection).
REFUSE_BOOM = {
    "sqlite": [
        f"CREATE TRIGGER refuse_boom_{when} BEFORE {when} ON {STEP_TABLE} "
        "WHEN NEW.step_name = 'boom' AND NEW.status = 'completed' "
        "BEGIN SELECT RAISE(ABORT, 'no boom'); END"
        for when in ("INSERT", "UPDATE")
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.step_name = 'boom' AND NEW.status = 'completed' THEN "
        "RAISE EXCEPTION 'no boom'; END IF; RETURN NEW; END $$",
        f"CREATE TRIGGER refuse_boom BEFORE INSERT OR UPDATE ON {STEP_TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
    ],
}


async def create_effects_table(factory: async_sessionmaker[AsyncSession]) -> None:
    async with factory() as session, session.begin():
        await session.execute(text(EFFECTS_DDL))


async def record(ctx: StepContext) -> dict:
    """Apply the step's effect once, whatever the retries: keyed by the idempotency key."""
    async with ctx.session_factory() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO saga_test_effects (key, saga_id) VALUES (:k, :s) "
                "ON CONFLICT (key) DO NOTHING"
            ),
            {"k": ctx.idempotency_key, "s": ctx.saga_id},
        )
    return {f"{ctx.step_name}_done": True}


async def unrecord(ctx: StepContext) -> None:
    async with ctx.session_factory() as session, session.begin():
        await session.execute(
            text("DELETE FROM saga_test_effects WHERE key = :k"), {"k": ctx.idempotency_key}
        )


async def effects(
    factory: async_sessionmaker[AsyncSession], saga_id: str | None = None
) -> list[str]:
    async with factory() as session:
        query = "SELECT key FROM saga_test_effects"
        params = {}
        if saga_id is not None:
            query += " WHERE saga_id = :s"
            params = {"s": saga_id}
        return sorted((await session.execute(text(query + " ORDER BY key"), params)).scalars())


def recording_saga(
    name: str = "recording", steps: int = 5, fail_at: str | None = None
) -> SagaDefinition:
    async def fail(ctx: StepContext) -> dict:
        await record(ctx)  # took effect, then failed: compensation must undo it too
        raise RuntimeError(f"{ctx.step_name} exploded")

    return SagaDefinition(
        name=name,
        steps=[
            SagaStep(
                name=f"step_{i}",
                execute=fail if fail_at == f"step_{i}" else record,
                compensate=unrecord,
            )
            for i in range(1, steps + 1)
        ],
    )


async def done(ctx: StepContext) -> dict:
    return {"done": True}


async def refund_down(ctx: StepContext) -> None:
    raise ConnectionError("refund service down")


async def boom(ctx: StepContext) -> dict:
    raise RuntimeError("boom")


def stuck_definition(
    name: str = "mystery", *, compensate: StepAction = refund_down, fail: StepAction = boom
) -> SagaDefinition:
    """A saga whose step b fails (``fail``) and whose step a's compensation fails
    (``compensate``, tried once): it ends in ``compensation_failed``."""
    return SagaDefinition(
        name=name,
        steps=[
            SagaStep(
                name="a",
                execute=done,
                compensate=compensate,
                compensation_retry=RetryPolicy(max_attempts=1),
            ),
            SagaStep(name="b", execute=fail),
        ],
    )
