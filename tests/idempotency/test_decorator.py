"""``@idempotent`` turns any async function into a once-per-payload operation."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from dotmac_shared.business_logic import InvalidInputError
from dotmac_shared.business_logic.idempotency import idempotent


async def test_decorated_function_runs_once_when_called_twice_with_equal_arguments(manager):
    runs: list[str] = []
    op = f"test_send_{uuid.uuid4().hex[:8]}"

    @idempotent(manager, operation_type=op)
    async def send_invoice(tenant_id: str, invoice_id: str, amount: Decimal) -> Decimal:
        runs.append(invoice_id)
        return amount * 2

    assert await send_invoice("t", "inv-1", Decimal("1.25")) == Decimal("2.50")
    assert await send_invoice(tenant_id="t", invoice_id="inv-1", amount=Decimal("1.25")) == Decimal(
        "2.50"
    )
    assert await send_invoice("t", "inv-2", Decimal("1")) == Decimal("2")
    assert runs == ["inv-1", "inv-2"]
    assert send_invoice.__name__ == "send_invoice"


async def test_decorated_failure_is_raised_when_the_function_fails(manager):
    @idempotent(manager, operation_type=f"test_fail_{uuid.uuid4().hex[:8]}")
    async def fail(tenant_id: str) -> None:
        raise LookupError("no such invoice")

    with pytest.raises(LookupError, match="no such invoice"):
        await fail("t")


def test_decorator_refuses_functions_when_they_cannot_be_keyed(manager):
    with pytest.raises(InvalidInputError, match="tenant_id"):

        @idempotent(manager, operation_type="x")
        async def no_tenant(invoice_id: str) -> None: ...

    with pytest.raises(InvalidInputError, match="variadic"):

        @idempotent(manager, operation_type="x")
        async def variadic(tenant_id: str, *args: str) -> None: ...

    with pytest.raises(InvalidInputError, match="unknown idempotency settings"):

        @idempotent(manager, operation_type="x", ttl_seconds=3)
        async def typo(tenant_id: str) -> None: ...
