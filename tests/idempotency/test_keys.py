"""Keys: deterministic from payloads, scoped by tenant and operation, validated."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dotmac_shared.business_logic import InvalidInputError
from dotmac_shared.business_logic.idempotency import IdempotencyKey

DATA = {"name": "New Tenant", "domain": "new-tenant", "plan": "basic", "fee": Decimal("9.90")}


def test_key_is_the_same_in_another_process_when_payload_is_equal():
    here = IdempotencyKey.generate("tenant_provisioning", "tenant123", DATA)
    code = (
        "from decimal import Decimal;"
        "from dotmac_shared.business_logic.idempotency import IdempotencyKey;"
        "print(IdempotencyKey.generate('tenant_provisioning','tenant123',"
        "{'fee': Decimal('9.9'),'plan':'basic','domain':'new-tenant','name':'New Tenant'}).key)"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert there == here.key
    assert here.key.startswith("tenant_provisioning:")


def test_key_differs_when_tenant_operation_or_payload_differ():
    base = IdempotencyKey.generate("op", "t1", DATA)
    assert IdempotencyKey.generate("op", "t2", DATA) != base
    assert IdempotencyKey.generate("op2", "t1", DATA).key != base.key
    assert IdempotencyKey.generate("op", "t1", {**DATA, "plan": "pro"}).key != base.key


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=5))
def test_client_key_carries_the_payload_fingerprint_when_wrapped(data):
    generated = IdempotencyKey.generate("op", "t", data)
    client = IdempotencyKey.from_client(
        "abc", operation_type="op", tenant_id="t", operation_data=data
    )
    assert client.payload_hash == generated.payload_hash and client.key == "abc"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"operation_type": "", "tenant_id": "t"}, "operation_type"),
        ({"operation_type": "has space", "tenant_id": "t"}, "operation_type"),
        ({"operation_type": "op", "tenant_id": None}, "tenant_id"),
    ],
)
def test_bad_scope_is_refused_when_generating(kwargs, field):
    with pytest.raises(InvalidInputError) as caught:
        IdempotencyKey.generate(operation_data={}, **kwargs)
    assert caught.value.field == field


def test_bad_client_key_is_refused_when_empty_or_too_long():
    for bad in ("", "   ", "x" * 256):
        with pytest.raises(InvalidInputError, match="255"):
            IdempotencyKey.from_client(bad, operation_type="op", tenant_id="t", operation_data={})


def test_payload_must_be_a_mapping_when_generating():
    with pytest.raises(InvalidInputError, match="mapping"):
        IdempotencyKey.generate("op", "t", ["not", "a", "dict"])  # type: ignore[arg-type]
