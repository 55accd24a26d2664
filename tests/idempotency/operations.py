"""Operations the idempotency tests run: they count how often their body really ran."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from dotmac_shared.business_logic.idempotency import IdempotentOperation

CALLS: Counter[str] = Counter()


class Flaky(Exception):
    """A transient failure worth retrying."""


class ChargeCard(IdempotentOperation):
    """Returns a rich result; counts its runs per payload id."""

    operation_type = "test_charge_card"

    async def execute(self, operation_data: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
        CALLS[operation_data["id"]] += 1
        await asyncio.sleep(float(operation_data.get("delay", 0)))
        return {
            "charged": Decimal(str(operation_data["amount"])),
            "tenant": context["tenant_id"],
            "user": context.get("user_id"),
            "run": CALLS[operation_data["id"]],
        }


class RefundCard(ChargeCard):
    """Another operation with the same payload shape: a client key must not cross over."""

    operation_type = "test_refund_card"


class FlakyOperation(IdempotentOperation):
    """Fails with :class:`Flaky` ``fail_times`` times per id, then succeeds."""

    operation_type = "test_flaky"
    retry_on = (Flaky,)
    max_attempts = 4
    retry_initial_delay = 0.001
    retry_max_delay = 0.01

    async def execute(self, operation_data: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
        CALLS[operation_data["id"]] += 1
        if CALLS[operation_data["id"]] <= operation_data["fail_times"]:
            raise Flaky(f"transient #{CALLS[operation_data['id']]}")
        return {"ok": True, "attempt": context["attempt"]}


class Broken(IdempotentOperation):
    """Always fails with a non-retryable error; failures are not cached."""

    operation_type = "test_broken"

    async def execute(self, operation_data: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
        CALLS[operation_data["id"]] += 1
        raise ValueError("card number is invalid")


class BrokenCached(Broken):
    """Always fails; the failure is stored and replayed."""

    operation_type = "test_broken_cached"
    cache_failures = True


class Unencodable(IdempotentOperation):
    """Returns something the codec refuses."""

    operation_type = "test_unencodable"

    async def execute(self, operation_data: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
        CALLS[operation_data["id"]] += 1
        return {"tags": {"a", "b"}}


EFFECTS_DDL = (
    "CREATE TABLE IF NOT EXISTS idem_test_effects "
    "(id INTEGER PRIMARY KEY {auto}, key VARCHAR(64), pid INTEGER)"
)


class RecordEffect(IdempotentOperation):
    """Writes a row per run of its body (so tests count runs in the database)."""

    operation_type = "test_record_effect"
    lease_seconds = 1.0

    async def execute(self, operation_data: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
        from sqlalchemy import text

        factory = context["session_factory"]
        async with factory() as session, session.begin():
            await session.execute(
                text("INSERT INTO idem_test_effects (key, pid) VALUES (:k, :p)"),
                {"k": operation_data["id"], "p": os.getpid()},
            )
        if context.get("hang"):
            await asyncio.sleep(3600)  # killed here
        await asyncio.sleep(float(operation_data.get("delay", 0)))
        return {"pid": os.getpid(), "id": operation_data["id"]}
