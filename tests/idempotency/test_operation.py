"""Defining an ``IdempotentOperation`` subclass registers it by ``operation_type``."""

from __future__ import annotations

import pytest

from dotmac_shared.business_logic import InvalidInputError
from dotmac_shared.business_logic.idempotency import (
    IdempotentOperation,
    registered_operation,
    registered_types,
)
from tests.idempotency.operations import ChargeCard


def test_subclass_is_registered_when_defined():
    assert registered_operation("test_charge_card") is ChargeCard
    assert "test_charge_card" in registered_types()


def test_second_class_is_refused_when_it_reuses_an_operation_type():
    with pytest.raises(InvalidInputError, match="already registered"):

        class Impostor(IdempotentOperation):
            operation_type = "test_charge_card"


def test_bad_operation_type_is_refused_when_defined():
    with pytest.raises(InvalidInputError, match="operation_type"):

        class Bad(IdempotentOperation):
            operation_type = "has spaces"


async def test_base_execute_says_it_must_be_implemented_when_not_overridden():
    class Empty(IdempotentOperation):
        operation_type = "test_empty_op"

    with pytest.raises(NotImplementedError, match="Empty"):
        await Empty().execute({}, {})
