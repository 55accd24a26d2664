from __future__ import annotations

import json

import pytest

from dotmac_shared.business_logic import (
    AuthenticationError,
    BillingRunError,
    BusinessLogicError,
    ErrorSeverity,
    IdempotencyError,
    IdempotencyPayloadMismatchError,
    IdempotencyRetriesExhaustedError,
    OperationInProgressError,
    PermissionDeniedError,
    PolicyViolationError,
    ProvisioningError,
    ProvisioningRefusedError,
    ResourceNotFoundError,
    SagaCompensatedError,
    SagaError,
)
from dotmac_shared.business_logic import exceptions as exc_module
from dotmac_shared.business_logic.observability import correlation_scope


def test_to_dict_carries_every_context_field_when_given():
    err = BusinessLogicError(
        "tenant quota exceeded",
        operation="tenant_provisioning",
        resource_type="tenant",
        resource_id="t-1",
        tenant_id="tenant123",
        user_id="user456",
        correlation_id="corr-1",
        severity=ErrorSeverity.CRITICAL,
        metadata={"quota": 10},
    )
    assert err.to_dict() == {
        "error": "BusinessLogicError",
        "code": "business_logic_error",
        "message": "tenant quota exceeded",
        "severity": "critical",
        "operation": "tenant_provisioning",
        "resource_type": "tenant",
        "resource_id": "t-1",
        "tenant_id": "tenant123",
        "user_id": "user456",
        "correlation_id": "corr-1",
        "metadata": {"quota": 10},
    }
    assert str(err) == "tenant quota exceeded"


def test_correlation_id_defaults_to_current_one_when_in_a_scope():
    with correlation_scope("request-42"):
        a = BusinessLogicError("a")
        b = SagaError("b", saga_id="s1")
    assert a.correlation_id == b.correlation_id == "request-42"


def test_correlation_id_is_fresh_when_no_scope_is_active():
    a, b = BusinessLogicError("a"), BusinessLogicError("b")
    assert a.correlation_id and b.correlation_id and a.correlation_id != b.correlation_id


def test_policy_violation_lists_failed_rules_and_version():
    err = PolicyViolationError(
        "not eligible",
        policy_name="residential_basic",
        policy_version="1.0.0",
        failed_rules=[{"rule": "credit_score", "message": "Credit score below 600"}],
    )
    data = err.to_dict()
    assert data["policy_name"] == "residential_basic"
    assert data["policy_version"] == "1.0.0"
    assert data["failed_rules"] == [{"rule": "credit_score", "message": "Credit score below 600"}]
    assert data["severity"] == "low"


@pytest.mark.parametrize(
    "cls",
    [OperationInProgressError, IdempotencyPayloadMismatchError, IdempotencyRetriesExhaustedError],
)
def test_idempotency_subclasses_are_idempotency_errors_with_their_own_code(cls):
    err = cls("x", idempotency_key="k1")
    assert isinstance(err, IdempotencyError)
    assert err.to_dict()["idempotency_key"] == "k1"
    assert err.code != IdempotencyError.code


def test_saga_error_reports_compensation():
    err = SagaError(
        "step failed",
        saga_id="s1",
        failed_step="allocate_resources",
        compensation_status="compensated",
        compensated_steps=["validate_request"],
    )
    data = err.to_dict()
    assert data["failed_step"] == "allocate_resources"
    assert data["compensated_steps"] == ["validate_request"]
    assert data["severity"] == "high"


def test_billing_run_error_names_affected_customers():
    err = BillingRunError("gateway down", billing_run_id="br-1", affected_customers=["c1", "c2"])
    assert err.to_dict()["affected_customers"] == ["c1", "c2"]
    assert isinstance(ProvisioningError("x"), BusinessLogicError)


def test_authentication_error_carries_its_challenge_when_raised():
    err = AuthenticationError("no key", challenge='Bearer realm="dotmac"')
    assert (err.code, err.to_dict()["challenge"]) == (
        "authentication_required",
        'Bearer realm="dotmac"',
    )
    assert AuthenticationError("no key").challenge == "Bearer"


def test_permission_denied_names_the_required_role_when_raised():
    err = PermissionDeniedError("admins only", required_role="admin", tenant_id="t1")
    assert (err.code, err.to_dict()["required_role"]) == ("permission_denied", "admin")


def test_resource_not_found_names_the_kind_and_id_when_raised():
    data = ResourceNotFoundError("no run", resource_type="billing_run", resource_id="r1").to_dict()
    assert (data["code"], data["resource_type"], data["resource_id"]) == (
        "not_found",
        "billing_run",
        "r1",
    )


def test_provisioning_refused_is_a_provisioning_error_with_its_own_code():
    err = ProvisioningRefusedError("domain taken", metadata={"field": "domain"})
    assert isinstance(err, ProvisioningError)
    assert err.code == "provisioning_refused" != ProvisioningError.code


def test_saga_compensated_carries_its_structured_failure_when_raised():
    failure = {"code": "invalid_input", "message": "bad", "step": "validate", "context": {}}
    err = SagaCompensatedError("not done", saga_id="s1", failed_step="validate", failure=failure)
    data = err.to_dict()
    assert (err.failure_code, data["failure"], data["compensation_status"]) == (
        "invalid_input",
        failure,
        "compensated",
    )
    assert SagaCompensatedError("not done").failure_code == "saga_compensated"


def test_every_exported_error_has_a_unique_code_and_serializes_to_json():
    classes = [
        getattr(exc_module, name)
        for name in exc_module.__all__
        if isinstance(getattr(exc_module, name), type)
        and issubclass(getattr(exc_module, name), BusinessLogicError)
    ]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        kwargs = {"policy_name": "p", "policy_version": "1"} if cls is PolicyViolationError else {}
        json.dumps(cls("m", **kwargs).to_dict())


def test_exceptions_docstring_draws_every_exported_error():
    doc = exc_module.__doc__ or ""
    for name in exc_module.__all__:
        if name != "ErrorSeverity":
            assert name in doc, name
