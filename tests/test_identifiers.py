"""Every identifier check refuses a trailing newline and other control characters.

Python's ``$`` also matches just before a trailing ``\\n``, so ``re.match(r"^[a-z]+$", "a\\n")``
succeeds: an identifier check must anchor with ``\\Z`` (or use ``fullmatch``). These tests put
a control character at the end, the start and the middle of an otherwise valid identifier and
expect the check that guards it to refuse it, naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dotmac_shared.business_logic.exceptions import (
    BusinessLogicError,
    InvalidInputError,
    PolicyDefinitionError,
    SagaDefinitionError,
)
from dotmac_shared.business_logic.idempotency import IdempotencyKey
from dotmac_shared.business_logic.idempotency._operation import (
    FunctionOperation,
    IdempotentOperation,
)
from dotmac_shared.business_logic.operations._tenant_steps import validate_tenant_request
from dotmac_shared.business_logic.policies import parse_policy_document
from dotmac_shared.business_logic.sagas import SagaDefinition, SagaStep

#: C0 controls, DEL, C1 controls and the Unicode line and paragraph separators.
CONTROL = st.sampled_from(
    [chr(c) for c in range(0x20)] + [chr(c) for c in range(0x7F, 0xA0)] + ["\u2028", "\u2029"]
)
#: Where the control character goes in the otherwise valid identifier.
PLACE = st.sampled_from(["end", "start", "middle"])


async def _noop(ctx: Any) -> dict[str, Any]:
    return {}


async def _function(**kwargs: Any) -> None:
    return None


def _new_operation_class(operation_type: str) -> None:
    type("EdgeOperation", (IdempotentOperation,), {"operation_type": operation_type})


def _tenant_request(**overrides: str) -> None:
    validate_tenant_request(
        {
            "name": "Acme",
            "domain": "acme",
            "plan": "basic",
            "admin_email": "admin@acme.example",
            **overrides,
        }
    )


def _policy(name: str = "plan_eligibility.edge", rule: str = "min_credit") -> None:
    parse_policy_document(
        {
            "name": name,
            "version": "1.0.0",
            "rules": [{"name": rule, "field": "credit_score", "operator": "gte", "value": 1}],
        }
    )


#: (what, valid value, check, expected error type, text the error names the field by)
CHECKS: list[tuple[str, str, Callable[[str], object], type[BusinessLogicError], str]] = [
    (
        "idempotency tenant_id",
        "tenantA",
        lambda v: IdempotencyKey.generate("refund", v, {}),
        InvalidInputError,
        "tenant_id",
    ),
    (
        "idempotency operation_type",
        "refund",
        lambda v: IdempotencyKey.generate(v, "tenantA", {}),
        InvalidInputError,
        "operation_type",
    ),
    (
        "client key tenant_id",
        "tenantA",
        lambda v: IdempotencyKey.from_client(
            "k1", operation_type="refund", tenant_id=v, operation_data={}
        ),
        InvalidInputError,
        "tenant_id",
    ),
    (
        "function operation_type",
        "edge_function",
        lambda v: FunctionOperation(_function, v),
        InvalidInputError,
        "operation_type",
    ),
    (
        "operation class operation_type",
        "edge_class",
        _new_operation_class,
        InvalidInputError,
        "operation_type",
    ),
    (
        "saga step name",
        "reserve",
        lambda v: SagaStep(name=v, execute=_noop),
        SagaDefinitionError,
        "step name",
    ),
    (
        "saga name",
        "provisioning",
        lambda v: SagaDefinition(name=v, steps=[SagaStep(name="one", execute=_noop)]),
        SagaDefinitionError,
        "saga name",
    ),
    (
        "tenant domain",
        "acme",
        lambda v: _tenant_request(domain=v),
        InvalidInputError,
        "domain",
    ),
    (
        "tenant admin_email",
        "admin@acme.example",
        lambda v: _tenant_request(admin_email=v),
        InvalidInputError,
        "admin_email",
    ),
    (
        "policy name",
        "plan_eligibility.edge",
        lambda v: _policy(name=v),
        PolicyDefinitionError,
        "name",
    ),
    (
        "policy rule name",
        "min_credit",
        lambda v: _policy(rule=v),
        PolicyDefinitionError,
        "name",
    ),
]


def _spoil(valid: str, control: str, place: str) -> str:
    if place == "end":
        return valid + control
    if place == "start":
        return control + valid
    middle = len(valid) // 2
    return valid[:middle] + control + valid[middle:]


def _field_named(error: BusinessLogicError, field: str) -> bool:
    return getattr(error, "field", None) == field or field in error.message


@pytest.mark.parametrize(
    ("what", "valid", "check", "error", "field"), CHECKS, ids=[c[0] for c in CHECKS]
)
def test_identifier_is_accepted_when_it_has_no_control_character(what, valid, check, error, field):
    check(valid)


@pytest.mark.parametrize(
    ("what", "valid", "check", "error", "field"), CHECKS, ids=[c[0] for c in CHECKS]
)
def test_identifier_is_refused_when_it_ends_with_a_newline(what, valid, check, error, field):
    with pytest.raises(error) as caught:
        check(valid + "\n")
    assert _field_named(caught.value, field), caught.value.message


@pytest.mark.parametrize(
    ("what", "valid", "check", "error", "field"), CHECKS, ids=[c[0] for c in CHECKS]
)
@given(control=CONTROL, place=PLACE)
def test_identifier_is_refused_when_it_holds_a_control_character(
    what, valid, check, error, field, control, place
):
    with pytest.raises(error) as caught:
        check(_spoil(valid, control, place))
    assert _field_named(caught.value, field), caught.value.message
