"""One exception hierarchy for the whole framework.

Every failure a caller can act on is a :class:`BusinessLogicError` carrying structured
context (operation, resource, tenant, user, correlation id, severity, metadata) and a
stable ``code`` that APIs and log queries can rely on::

    BusinessLogicError
    ├── InvalidInputError                 bad input: what and where
    ├── AuthenticationError               no valid credentials (HTTP 401)
    ├── PermissionDeniedError             the caller lacks the role an operation needs (403)
    ├── ResourceNotFoundError             no such resource for this tenant (404)
    ├── PersistenceError                  a database error, translated at the boundary
    │   └── SchemaVersionError            a schema revision this release cannot migrate
    ├── PolicyError
    │   ├── PolicyDefinitionError         a malformed policy document
    │   ├── PolicyNotFoundError           unknown policy name or version
    │   └── PolicyViolationError          raised by ``enforce(...)`` only
    ├── IdempotencyError
    │   ├── OperationInProgressError      another holder owns the key's lease
    │   ├── IdempotencyPayloadMismatchError   same key, different payload
    │   ├── IdempotencyRetriesExhaustedError  retryable failures ran out of attempts
    │   ├── IdempotencyLeaseLostError     the claim was taken over while its holder ran
    │   ├── IdempotencyResultNotSavedError    the body ran but its result could not be stored
    │   └── ResultSerializationError      a result the JSON codec cannot encode
    ├── SagaError
    │   ├── SagaDefinitionError           a malformed or unknown saga definition
    │   ├── SagaNotFoundError             no saga with that id
    │   ├── SagaTimeoutError              a step or the whole saga ran out of time
    │   ├── SagaLeaseLostError            another worker took the saga over (lease expired)
    │   ├── SagaConflictError             a saga id reused by another tenant, saga or input
    │   ├── SagaCompensatedError          a saga failed and was compensated: its failure, as data
    │   ├── SagaRepairRefusedError        an operator's repair action does not apply to the saga
    │   └── IllegalSagaTransitionError    a state change the state machine forbids
    ├── ProvisioningError                 tenant or service provisioning failed
    │   └── ProvisioningRefusedError      refused by a business rule (taken domain, ineligible)
    ├── BillingRunError                   a billing run failed, with customer impact
    └── NotificationDeliveryError         a notice not delivered: transient (retry) or not
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from dotmac_shared.business_logic.observability._context import get_correlation_id

__all__ = [
    "AuthenticationError",
    "BillingRunError",
    "BusinessLogicError",
    "ErrorSeverity",
    "IdempotencyError",
    "IdempotencyLeaseLostError",
    "IdempotencyPayloadMismatchError",
    "IdempotencyResultNotSavedError",
    "IdempotencyRetriesExhaustedError",
    "IllegalSagaTransitionError",
    "InvalidInputError",
    "NotificationDeliveryError",
    "OperationInProgressError",
    "PermissionDeniedError",
    "PersistenceError",
    "PolicyDefinitionError",
    "PolicyError",
    "PolicyNotFoundError",
    "PolicyViolationError",
    "ProvisioningError",
    "ProvisioningRefusedError",
    "ResourceNotFoundError",
    "ResultSerializationError",
    "SagaCompensatedError",
    "SagaConflictError",
    "SagaDefinitionError",
    "SagaError",
    "SagaLeaseLostError",
    "SagaNotFoundError",
    "SagaRepairRefusedError",
    "SagaTimeoutError",
    "SchemaVersionError",
]


class ErrorSeverity(enum.StrEnum):
    """How urgently a person must look at an error."""

    LOW = "low"  # expected business outcome, e.g. a declined eligibility check
    MEDIUM = "medium"  # the caller must act, e.g. fix input or retry later
    HIGH = "high"  # an operation failed unexpectedly; an operator should look
    CRITICAL = "critical"  # state may be inconsistent; a person must look now


class BusinessLogicError(Exception):
    """Base of every error the framework raises on purpose.

    Args:
        message: What went wrong, in words a caller can act on.
        operation: The operation that failed, e.g. ``"tenant_provisioning"``.
        resource_type: The kind of resource involved, e.g. ``"tenant"``.
        resource_id: The id of that resource.
        tenant_id: The tenant on whose behalf the operation ran.
        user_id: The user who asked for it.
        correlation_id: Ties the error to a request; defaults to the current one.
        severity: Defaults to the class's ``default_severity``.
        metadata: Anything else useful for debugging or auditing (JSON-friendly).

    Example:
        >>> err = BusinessLogicError("boom", tenant_id="t1", correlation_id="c1")
        >>> err.to_dict()["tenant_id"]
        't1'
    """

    code: ClassVar[str] = "business_logic_error"
    default_severity: ClassVar[ErrorSeverity] = ErrorSeverity.MEDIUM

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        tenant_id: str | None = None,
        user_id: str | None = None,
        correlation_id: str | None = None,
        severity: ErrorSeverity | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.tenant_id = tenant_id
        self.user_id = user_id
        self.correlation_id = correlation_id or get_correlation_id()
        self.severity = severity or self.default_severity
        self.metadata: dict[str, Any] = dict(metadata or {})

    def _details(self) -> dict[str, Any]:
        """Subclass-specific fields for :meth:`to_dict`."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly description for APIs and structured logs."""
        data: dict[str, Any] = {
            "error": type(self).__name__,
            "code": self.code,
            "message": self.message,
            "severity": self.severity.value,
            "operation": self.operation,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "tenant_id": self.tenant_id,
            "user_id": self.user_id,
            "correlation_id": self.correlation_id,
            "metadata": dict(self.metadata),
        }
        data.update(self._details())
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidInputError(BusinessLogicError):
    """Input that does not fit: ``field`` says where, the message says what."""

    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field = field

    def _details(self) -> dict[str, Any]:
        return {"field": self.field}


class AuthenticationError(BusinessLogicError):
    """The caller presented no credentials, or ones that are malformed, unknown or revoked.

    One error (and one message) for every such case, so that a caller learns nothing about
    which keys exist. ``challenge`` is what an HTTP answer puts in ``WWW-Authenticate``.

    Example:
        >>> AuthenticationError("this API needs an API key").to_dict()["challenge"]
        'Bearer'
    """

    code = "authentication_required"

    def __init__(self, message: str, *, challenge: str = "Bearer", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.challenge = challenge

    def _details(self) -> dict[str, Any]:
        return {"challenge": self.challenge}


class PermissionDeniedError(BusinessLogicError):
    """The caller is known but lacks the role the operation needs (``required_role``).

    Example:
        >>> PermissionDeniedError("admins only", required_role="admin").to_dict()["required_role"]
        'admin'
    """

    code = "permission_denied"

    def __init__(self, message: str, *, required_role: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.required_role = required_role

    def _details(self) -> dict[str, Any]:
        return {"required_role": self.required_role}


class ResourceNotFoundError(BusinessLogicError):
    """No resource of that kind (``resource_type``) and id (``resource_id``) for this tenant.

    Also what another tenant's resource looks like: it is reported exactly like a missing one,
    so that a caller cannot learn that it exists.

    Example:
        >>> err = ResourceNotFoundError("no customer", resource_type="customer", resource_id="c1")
        >>> (err.code, err.to_dict()["resource_type"])
        ('not_found', 'customer')
    """

    code = "not_found"


class PersistenceError(BusinessLogicError):
    """A database error, translated at the persistence boundary (original as ``__cause__``)."""

    code = "persistence_error"
    default_severity = ErrorSeverity.HIGH


class SchemaVersionError(PersistenceError):
    """The database's schema is at a revision this release cannot migrate from.

    Raised before any migration runs, e.g. for a database created by a pre-release schema
    or by a newer release. ``metadata["revisions"]`` lists the revisions found.
    """

    code = "schema_version_error"


# --- policies -------------------------------------------------------------------------------


class PolicyError(BusinessLogicError):
    """Base of policy errors."""

    code = "policy_error"


class PolicyDefinitionError(PolicyError):
    """A policy document that cannot be used: names the policy, the rule and the problem."""

    code = "policy_definition_error"

    def __init__(
        self,
        message: str,
        *,
        policy_name: str | None = None,
        rule_name: str | None = None,
        location: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.policy_name = policy_name
        self.rule_name = rule_name
        self.location = location

    def _details(self) -> dict[str, Any]:
        return {
            "policy_name": self.policy_name,
            "rule_name": self.rule_name,
            "location": self.location,
        }


class PolicyNotFoundError(PolicyError):
    """No policy (or no such version of it) is registered."""

    code = "policy_not_found"

    def __init__(
        self,
        message: str,
        *,
        policy_name: str | None = None,
        version: str | None = None,
        known: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.policy_name = policy_name
        self.version = version
        self.known = list(known)

    def _details(self) -> dict[str, Any]:
        return {"policy_name": self.policy_name, "version": self.version, "known": self.known}


class PolicyViolationError(PolicyError):
    """A policy did not allow the operation; raised only by ``enforce(...)``."""

    code = "policy_violation"
    default_severity = ErrorSeverity.LOW

    def __init__(
        self,
        message: str,
        *,
        policy_name: str,
        policy_version: str,
        failed_rules: Sequence[Mapping[str, Any]] = (),
        decision: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.policy_name = policy_name
        self.policy_version = policy_version
        self.failed_rules = [dict(rule) for rule in failed_rules]
        self.decision = decision

    def _details(self) -> dict[str, Any]:
        return {
            "policy_name": self.policy_name,
            "policy_version": self.policy_version,
            "failed_rules": self.failed_rules,
            "decision": self.decision,
        }


# --- idempotency ----------------------------------------------------------------------------


class IdempotencyError(BusinessLogicError):
    """Base of idempotency errors; ``idempotency_key`` names the key involved."""

    code = "idempotency_error"

    def __init__(self, message: str, *, idempotency_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.idempotency_key = idempotency_key

    def _details(self) -> dict[str, Any]:
        return {"idempotency_key": self.idempotency_key}


class OperationInProgressError(IdempotencyError):
    """Another caller holds the key's lease; retry after ``retry_after`` seconds."""

    code = "idempotency_in_progress"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def _details(self) -> dict[str, Any]:
        return {**super()._details(), "retry_after": self.retry_after}


class IdempotencyPayloadMismatchError(IdempotencyError):
    """The key was used before with a different payload; nothing was run or returned."""

    code = "idempotency_payload_mismatch"


class IdempotencyRetriesExhaustedError(IdempotencyError):
    """Retryable failures used up every attempt; the last error is ``__cause__``."""

    code = "idempotency_retries_exhausted"
    default_severity = ErrorSeverity.HIGH

    def __init__(self, message: str, *, attempts: int = 0, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.attempts = attempts

    def _details(self) -> dict[str, Any]:
        return {**super()._details(), "attempts": self.attempts}


class IdempotencyLeaseLostError(IdempotencyError):
    """The holder's lease ran out and another caller took the key over; its result was dropped.

    The operation body may have run twice: give it the key to pass to anything external.
    """

    code = "idempotency_lease_lost"
    default_severity = ErrorSeverity.HIGH


class IdempotencyResultNotSavedError(IdempotencyError):
    """The operation body succeeded but its result could not be stored, even after retries.

    The body's effects happened; the key's lease runs out and a retry runs the body again,
    so give the body the key to pass to anything external. The storage error is ``__cause__``.
    """

    code = "idempotency_result_not_saved"
    default_severity = ErrorSeverity.HIGH


class ResultSerializationError(IdempotencyError):
    """A value the JSON codec cannot encode; raised before anything is committed."""

    code = "result_not_serializable"


# --- sagas ----------------------------------------------------------------------------------


class SagaError(BusinessLogicError):
    """A saga failed; says which step and how far compensation got."""

    code = "saga_error"
    default_severity = ErrorSeverity.HIGH

    def __init__(
        self,
        message: str,
        *,
        saga_id: str | None = None,
        saga_name: str | None = None,
        failed_step: str | None = None,
        compensation_status: str | None = None,
        compensated_steps: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.saga_id = saga_id
        self.saga_name = saga_name
        self.failed_step = failed_step
        self.compensation_status = compensation_status
        self.compensated_steps = list(compensated_steps)

    def _details(self) -> dict[str, Any]:
        return {
            "saga_id": self.saga_id,
            "saga_name": self.saga_name,
            "failed_step": self.failed_step,
            "compensation_status": self.compensation_status,
            "compensated_steps": self.compensated_steps,
        }


class SagaDefinitionError(SagaError):
    """A malformed saga definition, or a saga name nobody registered."""

    code = "saga_definition_error"
    default_severity = ErrorSeverity.MEDIUM


class SagaNotFoundError(SagaError):
    """No saga execution with that id exists."""

    code = "saga_not_found"
    default_severity = ErrorSeverity.MEDIUM


class SagaTimeoutError(SagaError):
    """A step, or the saga as a whole, ran past its timeout."""

    code = "saga_timeout"


class SagaLeaseLostError(SagaError):
    """This worker's lease on the saga expired and another worker owns it now; stop driving it."""

    code = "saga_lease_lost"
    default_severity = ErrorSeverity.MEDIUM


class SagaConflictError(SagaError):
    """A saga id already used by another tenant, another saga, or with other initial data.

    Nothing was run and nothing of the existing saga is returned; ``metadata["reason"]`` says
    which of ``tenant``, ``saga_name`` or ``initial_data`` differs.
    """

    code = "saga_conflict"
    default_severity = ErrorSeverity.MEDIUM


class SagaCompensatedError(SagaError):
    """A saga failed and was compensated: nothing of it is left, and ``failure`` says why.

    ``failure`` is the saga's structured failure (``SagaResult.error`` as a dict: ``code``,
    ``message``, ``step``, ``context``); its ``code`` is the stable code of the error the
    failing step raised (``invalid_input``, ``policy_violation``...) or a generic one
    (``unexpected_error``, ``step_timeout``, ``saga_cancelled``). ``failure_code`` is that code.

    Example:
        >>> err = SagaCompensatedError(
        ...     "not provisioned",
        ...     saga_id="s1",
        ...     failed_step="validate_request",
        ...     failure={"code": "invalid_input", "message": "bad", "step": "validate_request"},
        ... )
        >>> err.failure_code
        'invalid_input'
    """

    code = "saga_compensated"
    default_severity = ErrorSeverity.MEDIUM

    def __init__(
        self, message: str, *, failure: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("compensation_status", "compensated")
        super().__init__(message, **kwargs)
        self.failure: dict[str, Any] = dict(failure or {})

    @property
    def failure_code(self) -> str:
        """The stable code of the failure (this error's own code when none was recorded)."""
        return str(self.failure.get("code") or self.code)

    def _details(self) -> dict[str, Any]:
        return {**super()._details(), "failure": dict(self.failure)}


class SagaRepairRefusedError(SagaError):
    """An operator's repair action that does not apply to the saga as it is; nothing changed.

    ``metadata`` says what was refused and why: ``action`` (``retry_compensation``,
    ``mark_step_compensated``, ``retry_step``, ``cancel``, ``resolve_incident``), ``status``
    (the saga's status when refused), ``step`` (the step concerned, if any) and ``reason``
    (a stable word: ``wrong_status``, ``wrong_step_status``, ``unknown_step``,
    ``past_pivot``, ``missing_reason``, ``changed_meanwhile``).

    Example:
        >>> err = SagaRepairRefusedError(
        ...     "saga s1 is completed", saga_id="s1", action="retry_step", status="completed"
        ... )
        >>> err.to_dict()["metadata"]["action"]
        'retry_step'
    """

    code = "saga_repair_refused"
    default_severity = ErrorSeverity.MEDIUM

    def __init__(
        self,
        message: str,
        *,
        action: str = "repair",
        status: str | None = None,
        step: str | None = None,
        reason: str = "wrong_status",
        **kwargs: Any,
    ) -> None:
        metadata = dict(kwargs.pop("metadata", None) or {})
        metadata.update({"action": action, "status": status, "step": step, "reason": reason})
        kwargs.setdefault("failed_step", step)
        super().__init__(message, metadata=metadata, **kwargs)
        self.action = action


class IllegalSagaTransitionError(SagaError):
    """A state change the saga state machine does not allow."""

    code = "saga_illegal_transition"
    default_severity = ErrorSeverity.CRITICAL


# --- operations -----------------------------------------------------------------------------


class ProvisioningError(BusinessLogicError):
    """Tenant or service provisioning failed (after any compensation)."""

    code = "provisioning_error"
    default_severity = ErrorSeverity.HIGH


class ProvisioningRefusedError(ProvisioningError):
    """Provisioning refused by a business rule: the request, not a system, is at fault.

    For example a domain another tenant owns, or a customer a plan's eligibility policy
    denies (``metadata["reasons"]``); ``metadata["field"]`` names the input to change, if one.
    """

    code = "provisioning_refused"
    default_severity = ErrorSeverity.LOW


class BillingRunError(BusinessLogicError):
    """A billing run failed; lists the customers it affected."""

    code = "billing_run_error"
    default_severity = ErrorSeverity.HIGH

    def __init__(
        self,
        message: str,
        *,
        billing_run_id: str | None = None,
        affected_customers: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.billing_run_id = billing_run_id
        self.affected_customers = list(affected_customers)

    def _details(self) -> dict[str, Any]:
        return {
            "billing_run_id": self.billing_run_id,
            "affected_customers": self.affected_customers,
        }


class NotificationDeliveryError(BusinessLogicError):
    """A notification transport did not deliver a message.

    Args:
        message: What the server or network said.
        transient: Worth retrying later (an SMTP 4xx, a refused connection, an HTTP 5xx,
            408 or 429, a timeout); otherwise the message goes to the dead letter at once
            (an SMTP 5xx, any other HTTP 4xx).
        reason: A short stable tag of the failure for logs and the outbox's
            ``last_error_code``, e.g. ``"smtp_550"``, ``"http_503"``, ``"connect"``.
    """

    code = "notification_delivery_failed"

    def __init__(
        self, message: str, *, transient: bool = False, reason: str = "error", **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.transient = transient
        self.reason = reason

    def _details(self) -> dict[str, Any]:
        return {"transient": self.transient, "reason": self.reason}
